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
