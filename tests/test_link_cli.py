"""`wildlink airtime` and `wildlink simulate` through the real CLI dispatcher."""

from __future__ import annotations

import re

import pytest

from tools.cli import main


def test_airtime_eu868(capsys) -> None:
    assert main(["airtime", "--bytes", "3000", "--sf", "9", "--freq", "868.1"]) == 0
    out = capsys.readouterr().out
    assert "sub-band h1.5: duty cycle 1.0%" in out
    assert re.search(r"fragments\s+13 x up to 240 B", out)
    assert "steady state    26.2 min" in out


def test_airtime_us915_caps_the_frame_by_dwell(capsys) -> None:
    assert main(["airtime", "--bytes", "1000", "--sf", "10", "--region", "us915"]) == 0
    out = capsys.readouterr().out
    assert "dwell 400 ms" in out and "up to 24 B" in out  # 24-byte frames at SF10


def test_simulate_reports_identical_and_ratio(capsys) -> None:
    assert main(["simulate", "--bytes", "4000", "--loss", "0.2", "--sf", "7", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "arrived identical  yes" in out
    ratio = float(re.search(r"ratio\s+([\d.]+)", out).group(1))
    assert 1.0 < ratio < 2.0


def test_simulate_bursts_with_duty_cycle(capsys) -> None:
    args = ["simulate", "--bytes", "3000", "--loss", "0.3", "--burst", "--region", "eu868",
            "--freq", "868.1", "--encrypt"]
    assert main(args) == 0
    assert "bursts of 4" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["airtime", "--bytes", "0"],
                                  ["simulate", "--bytes", "10", "--loss", "1.5"],
                                  ["airtime", "--bytes", "10", "--region", "eu868", "--freq", "915"],
                                  ["airtime", "--bytes", "10", "--sf", "12", "--region", "us915"]])
def test_bad_input_is_one_line_error(args, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wildlink {args[0]}: error:") and err.count("\n") == 1


# ---------------------------------------------------------------- choosing settings (issue 16.6)


def test_airtime_answers_pictures_per_hour_and_day(capsys) -> None:
    assert main(["airtime", "--budget", "3000", "--sf", "9", "--band", "h1.5"]) == 0
    out = capsys.readouterr().out
    assert "sub-band h1.5: duty cycle 1.0%" in out
    # 36 s/h of airtime over 15.72 s per picture
    assert "pictures        2.3 per hour, 55 per day" in out


def test_airtime_table_over_sf_and_budgets(capsys) -> None:
    assert main(["airtime", "--budget", "1000", "8000", "--sf", "5", "7", "12"]) == 0
    out = capsys.readouterr().out
    assert "sub-band h1.7: duty cycle 10.0%" in out  # the configs' 869.525 by default
    rows = [line for line in out.splitlines() if line.startswith("| SF")]
    assert [r.split(" |")[0] for r in rows] == ["| SF", "| SF5", "| SF7", "| SF12"]
    sf7_1000 = rows[2].split("|")[2]
    assert sf7_1000.strip().startswith("211/h (5064/day)")


def test_sf5_and_6_are_accepted_and_labelled(capsys) -> None:
    from tools.cli import build_parser

    assert main(["airtime", "--bytes", "500", "--sf", "5"]) == 0
    for command in ("airtime", "simulate"):
        assert "5..12" in build_parser(command).format_help()
    assert main(["airtime", "--bytes", "10", "--band", "h9"]) == 2
    assert "has no sub-band 'h9'" in capsys.readouterr().err


def test_radio_command_defaults_to_the_configs_frequency() -> None:
    from device.service.config import DEFAULT_FREQUENCY_MHZ
    from tools.cli import build_parser
    from tools.commands import radio

    args = build_parser("radio").parse_args([])
    assert radio.spec_from_args(args)[1]["freq"] == str(DEFAULT_FREQUENCY_MHZ) == "869.525"
    e22 = build_parser("radio").parse_args(["--driver", "e22"])
    assert "freq" not in radio.spec_from_args(e22)[1]  # the E22 keeps its channel
