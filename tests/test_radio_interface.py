"""The `Radio` and `Clock` protocols carry what the link and the services plan with, so no
caller reads a driver's or the simulator's internals (issue 17 item 4)."""

from __future__ import annotations

import pytest

from device.radio.airtime import Modulation
from device.radio.base import Radio
from device.radio.clock import Clock, ScaledClock, SystemClock, VirtualClock
from device.radio.sim import SimChannel


class _NoModulation:
    mtu = 255

    def send(self, frame: bytes) -> float:
        return 0.0

    def receive(self, timeout: float):
        return None

    def close(self) -> None:
        pass


def test_a_radio_reports_its_modulation():
    assert not isinstance(_NoModulation(), Radio)
    radio = SimChannel().radio("a", modulation=Modulation(sf=7))
    assert isinstance(radio, Radio) and radio.modulation.sf == 7


@pytest.mark.parametrize(("clock", "speedup"), [(SystemClock(), 1.0), (VirtualClock(), 1.0),
                                                (ScaledClock(20.0), 20.0)])
def test_every_clock_says_how_fast_it_runs(clock, speedup):
    assert isinstance(clock, Clock) and clock.speedup == speedup
