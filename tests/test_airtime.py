"""Time on air against the SX126x datasheet figures quoted in issue 7."""

from __future__ import annotations

import pytest

from device.radio.airtime import ldro_needed, symbol_time, time_on_air


@pytest.mark.parametrize(
    ("sf", "expected_ms"), [(7, 379.1), (9, 1188.9), (12, 8527.9)]
)
def test_240_bytes_matches_datasheet(sf: int, expected_ms: float) -> None:
    assert time_on_air(240, sf, 125e3, cr=5, preamble=8) * 1000 == pytest.approx(
        expected_ms, abs=0.1
    )


def test_symbol_time_and_ldro_rule() -> None:
    assert symbol_time(7, 125e3) == pytest.approx(1.024e-3)
    assert not ldro_needed(10, 125e3)  # 8.2 ms
    assert ldro_needed(11, 125e3)  # 16.4 ms
    assert not ldro_needed(12, 500e3)  # 8.2 ms
    # forcing LDRO off at SF12 makes the packet shorter (more bits per symbol)
    assert time_on_air(240, 12, 125e3, ldro=False) < time_on_air(240, 12, 125e3)


def test_monotonic_in_payload_and_sf() -> None:
    for sf in range(5, 13):
        times = [time_on_air(n, sf, 125e3) for n in range(0, 256)]
        assert all(b >= a for a, b in zip(times, times[1:], strict=False))
    assert all(
        time_on_air(100, sf, 125e3) < time_on_air(100, sf + 1, 125e3) for sf in range(5, 12)
    )


def test_header_crc_and_coding_rate_cost_airtime() -> None:
    base = time_on_air(50, 9, 125e3)
    assert time_on_air(50, 9, 125e3, explicit_header=False) < base
    assert time_on_air(50, 9, 125e3, crc=False) <= base
    assert time_on_air(50, 9, 125e3, cr=8) > base


@pytest.mark.parametrize(
    "kwargs",
    [dict(payload_len=256), dict(sf=13), dict(sf=4), dict(cr=4), dict(bw_hz=0), dict(preamble=0)],
)
def test_rejects_out_of_range(kwargs: dict) -> None:
    args = dict(payload_len=10, sf=7, bw_hz=125e3) | kwargs
    with pytest.raises(ValueError):
        time_on_air(**args)
