"""The scale simulation (tools/manytraps.py): the real link layer for several traps over the
shared air, on the virtual clock. Small and seeded; the figures themselves are in BENCHMARKS.md."""

from __future__ import annotations

import math

import pytest

from tools.manytraps import Scenario, aloha_throughput, main, simulate


def test_a_small_busy_channel_delivers_every_picture_exactly_once() -> None:
    scenario = Scenario(traps=4, rate=12.0, sf=7, band="h1.7", hours=1.0, drain_hours=2.0,
                        seed=3)
    outcome = simulate(scenario)
    assert outcome.pictures > 20
    assert outcome.exactly_once
    assert outcome.collided > 0  # the traps did meet in the air, and ARQ recovered
    assert 0 < outcome.mean_delay <= outcome.p95_delay <= outcome.max_delay
    assert simulate(scenario).as_dict() == outcome.as_dict()  # deterministic


def test_listen_before_talk_and_hidden_terminals_run() -> None:
    scenario = Scenario(traps=3, rate=12.0, sf=7, hours=0.5, drain_hours=1.0, seed=1,
                        lbt=True, hidden=0.5)
    assert simulate(scenario).exactly_once


def test_aloha_throughput_peaks_at_half_load() -> None:
    assert aloha_throughput(0.5) == pytest.approx(1 / (2 * math.e))
    assert aloha_throughput(0.4) < aloha_throughput(0.5) > aloha_throughput(0.6)


def test_the_command_refuses_bad_input_with_one_line(capsys) -> None:
    assert main(["--traps", "2", "--band", "h9"]) == 2
    assert "has no sub-band 'h9'" in capsys.readouterr().err
    assert main(["--traps", "0"]) == 2
