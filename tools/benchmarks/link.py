"""BENCHMARKS.md section: LoRa link overhead, efficiency under loss, delivery under duty cycles.

All figures come from the real Sender/Receiver/queue/store over the simulated channel on the
virtual clock (device/radio/sim.py), so they are exact airtime arithmetic, not wall-clock
measurements; only the loss draws are random (seeded).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

from device.link import frames
from device.radio.airtime import MAX_PAYLOAD, Modulation
from tools.linksim import random_bytes, simulate_transfer

SIZES = (3000, 10_000)
SFS = (7, 9)
LOSSES = (0.1, 0.2, 0.3)
DUTIES = (("1%", "eu868", 868.1, 0.01), ("10%", "eu868", 869.525, 0.10))


def _workdir() -> Path | None:
    shm = Path("/dev/shm")  # SQLite fsyncs cost nothing in RAM; the figures do not depend on it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def _bare_airtime(nbytes: int, modulation: Modulation) -> float:
    """The PHY minimum: the bytes alone in full 255-byte packets, no link header, no acks."""
    full, rest = divmod(nbytes, MAX_PAYLOAD)
    return full * modulation.time_on_air(MAX_PAYLOAD) + (modulation.time_on_air(rest) if rest else 0)


def _overhead(lines: list[str]) -> None:
    lines += ["### Framing overhead", "",
              "Share of the lossless link airtime (data frames and acks, both directions) that "
              "is not image bytes, against the same bytes alone in full 255-byte LoRa packets. "
              f"A data frame adds {frames.data_overhead(True)} bytes (9 header, 4 MIC, 2 CRC).",
              "", "Command: `wildlink simulate --bytes N --loss 0 --sf SF` (lossless airtime).", "",
              "| image | SF | fragments | link airtime (s) | bytes alone (s) | overhead |",
              "|---|---|---|---|---|---|"]
    for nbytes in SIZES:
        for sf in SFS:
            modulation = Modulation(sf=sf)
            t = simulate_transfer(bytes(nbytes), 0.0, modulation=modulation, workdir=_workdir())
            bare = _bare_airtime(nbytes, modulation)
            lines.append(f"| {nbytes // 1000} KB | {sf} | {t.fragments} | {t.airtime:.2f} | "
                         f"{bare:.2f} | {(1 - bare / t.airtime) * 100:.1f}% |")
    lines.append("")


def _loss(lines: list[str], seeds: int) -> None:
    lines += ["### Airtime under loss", "",
              f"10 KB image, SF7, loss in both directions, mean over {seeds} seeds. Ratio = "
              "airtime (trap + base) / lossless airtime; the ideal selective-repeat ARQ needs "
              "1/(1-p). Goal: within 10% of it.", "",
              "Command: `wildlink simulate --bytes 10000 --sf 7 --loss P [--burst] --seed S`.", "",
              "| loss | model | ratio (mean ± sd) | ideal 1/(1-p) | vs ideal | delivered |",
              "|---|---|---|---|---|---|"]
    modulation = Modulation(sf=7)
    clean = simulate_transfer(bytes(10_000), 0.0, modulation=modulation,
                              workdir=_workdir()).airtime
    for p in LOSSES:
        for burst in (False, True):
            ratios, ok = [], 0
            for seed in range(seeds):
                t = simulate_transfer(random_bytes(10_000, seed), p, burst=burst,
                                      modulation=modulation, seed=seed, workdir=_workdir())
                ratios.append(t.airtime / clean)
                ok += t.identical
            mean = statistics.fmean(ratios)
            sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
            ideal = 1 / (1 - p)
            model = "bursts (mean 4)" if burst else "independent"
            lines.append(f"| {p:.0%} | {model} | {mean:.3f} ± {sd:.3f} | {ideal:.3f} | "
                         f"{(mean / ideal - 1) * 100:+.1f}% | {ok}/{seeds} |")
    lines.append("")


def _duty(lines: list[str], hours: int) -> None:
    lines += ["### Time to deliver under the EU868 duty cycle", "",
              "Lossless, signed frames. *First* = one image sent from an idle hour (the whole "
              "hourly budget is available). *Sustained* = a trap with a backlog, simulated for "
              f"{hours} h: hours per image delivered after the first hour. The bound is "
              "airtime / duty cycle.", "",
              "Command: `wildlink airtime --bytes N --sf SF --region eu868 --freq F` "
              "(868.1 MHz = 1% sub-band h1.5, 869.525 MHz = 10% sub-band h1.7).", "",
              "| image | SF | duty cycle | airtime / image (s) | first (h) | sustained (h / image) "
              "| bound: airtime / duty (h) | images in the run |",
              "|---|---|---|---|---|---|---|---|"]
    for nbytes in SIZES:
        for sf in SFS:
            modulation = Modulation(sf=sf)
            one = simulate_transfer(bytes(nbytes), 0.0, modulation=modulation,
                                    workdir=_workdir())
            for label, region, freq, duty in DUTIES:
                first = simulate_transfer(bytes(nbytes), 0.0, modulation=modulation,
                                          region=region, freq_mhz=freq, workdir=_workdir())
                n = math.ceil((hours + 1) * duty * 3600 / one.airtime_up) + 2
                backlog = simulate_transfer(bytes(nbytes), 0.0, modulation=modulation,
                                            region=region, freq_mhz=freq, images=n,
                                            deadline=hours * 3600.0, workdir=_workdir())
                later = [t for t in backlog.delivered_at if 3600 < t <= hours * 3600]
                sustained = (hours - 1) / len(later) if later else float("nan")
                lines.append(
                    f"| {nbytes // 1000} KB | {sf} | {label} | {one.airtime_up:.1f} | "
                    f"{first.elapsed / 3600:.4f} | {sustained:.3f} | "
                    f"{one.airtime_up / duty / 3600:.3f} | {len(backlog.delivered_at)} |")
    lines.append("")


def run(quick: bool) -> str:
    start = time.monotonic()
    lines = ["## LoRa link: overhead, loss, duty cycle", ""]
    if quick:
        lines += ["**QUICK mode**: 3 seeds and short backlogs; a smoke test, not a result.", ""]
    _overhead(lines)
    _loss(lines, seeds=3 if quick else 20)
    _duty(lines, hours=3 if quick else 24)
    lines += [f"All times above are simulated (virtual clock); the section took "
              f"{time.monotonic() - start:.0f} s of wall time. Whole section: "
              "`wildlink bench --sections link`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(run(quick="--quick" in sys.argv))
