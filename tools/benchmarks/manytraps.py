"""BENCHMARKS.md section: many traps on one channel (issue 18 item 4).

The real Sender/Receiver/queue/store for each trap and the base, over the shared air of the
radio simulator (collisions, half-duplex) on the virtual clock: tools/manytraps.py.
"""

from __future__ import annotations

import time

from tools.manytraps import HEADER, Outcome, Scenario, _workdir, duration, row, simulate

RATE = 2.0  #: pictures per trap per hour
TRAPS = (1, 5, 10, 20)
BANDS = ("h1.5", "h1.7")  # EU868 1% and 10% (device/link/dutycycle.py)
SFS = (7, 9)
SATURATION = (20, 30, 40, 50, 60)  #: trap counts at SF9 in the 10% sub-band, to find the knee
SATURATION_HOURS = 6.0  #: of events (and as much drain): collapsed channels are slow to simulate


def _command(s: Scenario) -> str:
    extra = (" --lbt" if s.lbt else "") + (f" --hidden {s.hidden:g}" if s.hidden else "")
    extra += f" --hours {s.hours:g}" if s.hours != 24 else ""
    extra += f" --drain {s.drain_hours:g}" if s.drain_hours != 24 else ""
    return f"python -m tools.manytraps --traps N --sf {s.sf} --band {s.band}{extra}"


def _table(lines: list[str], outcomes: list[Outcome]) -> None:
    lines += [HEADER] + [row(o) for o in outcomes] + [""]


def run(quick: bool) -> str:
    start = time.monotonic()
    hours = 3.0 if quick else 24.0
    traps = (1, 5) if quick else TRAPS
    lines = ["## Many traps, one base, one channel", ""]
    if quick:
        lines += ["**QUICK mode**: 3 simulated hours, 1 and 5 traps; a smoke test.", ""]
    lines += [
        f"Each trap takes pictures as a Poisson process at **{RATE:g} an hour** (a busy site: "
        f"{RATE * 24:.0f} a day), each a container of uniformly 2000-3000 random bytes (what "
        "the trap's 3000-B budget gives; the codec does not run), queued at the event. "
        f"{hours:g} simulated hours of events, then up to 24 h to drain backlogs. Every trap "
        "is the real `Sender` with its SQLite queue and its own duty-cycle accountant, the "
        "base the real `Receiver` (its acks under its own duty cycle), each a thread on one "
        "virtual clock (`EventClock`) over `SimChannel`'s shared air: frames overlapping on "
        "the carrier and SF are both lost, a radio hears nothing while it sends, no other "
        "loss, no capture, BW 125 kHz, CR 4/5, signed frames. Seed 0. " + _link_note(),
        "",
        "Columns: *delivered (in the window)* = distinct pictures complete at the base by "
        "the end of the drain (before the hours of events ended: the day, or 6 h below); *exactly once* = every picture delivered, "
        "none twice, all byte-identical; delay = completion at the base minus the picture's "
        "event; *airtime/picture* = all airtime (trap data, polls, retries and the base's "
        "acks) per delivered picture; *G* = offered load, channel airtime per second over the "
        "run; *collisions* = share of transmissions overlapped by another; pure ALOHA at the "
        "same G predicts a share 1-e^-2G collided and throughput S = G e^-2G (*S measured* = "
        "airtime of transmissions nobody overlapped, per second).",
        "",
    ]
    main = [Scenario(n, RATE, sf, band, hours=hours) for band in BANDS for sf in SFS
            for n in traps]
    outcomes = [simulate(s, _workdir()) for s in main]
    lines += ["### 1, 5, 10, 20 traps under the 1% and 10% sub-bands", "",
              f"Command (one row): `{_command(main[0]).replace('--band h1.5', '--band BAND')}`"
              " with BAND h1.5 (868.1 MHz, 1%) or h1.7 (869.525 MHz, 10%), SF 7 or 9.", ""]
    _table(lines, outcomes)
    _findings(lines, outcomes, quick)
    _versus_aloha(lines, outcomes)
    if not quick:
        lbt = [Scenario(n, RATE, 9, band, lbt=True, hidden=hidden, hours=hours)
               for band in BANDS for n in (10, 20) for hidden in (0.0, 0.5)]
        extra = [simulate(s, _workdir()) for s in lbt]
        lines += ["### Does listen-before-talk pay?", "",
                  _lbt_note(), "",
                  "Commands: `python -m tools.manytraps --traps 10 20 --sf 9 --band BAND "
                  "[--lbt] [--hidden 0.5]` (without listen-before-talk, hidden pairs change "
                  "nothing: traps never use what they hear of each other).", ""]
        base = {(o.scenario.traps, o.scenario.band): o for o in outcomes if o.scenario.sf == 9}
        _table(lines, [base[n, b] for b in BANDS for n in (10, 20)] + extra)
        sweep = [Scenario(n, RATE, 9, "h1.7", lbt=lbt, hours=SATURATION_HOURS,
                          drain_hours=SATURATION_HOURS)
                 for lbt in (False, True) for n in SATURATION]
        sat = [simulate(s, _workdir()) for s in sweep]
        lines += ["### Where the channel saturates", "",
                  f"SF9, 10% sub-band, {RATE:g} pictures/h/trap, {SATURATION_HOURS:g} h of "
                  f"events and {SATURATION_HOURS:g} h of drain (a collapsed channel is slow to "
                  "simulate), without and with listen-before-talk. Command: `python -m "
                  f"tools.manytraps --traps {' '.join(map(str, SATURATION))} --sf 9 --band "
                  f"h1.7 --hours {SATURATION_HOURS:g} --drain {SATURATION_HOURS:g} [--lbt]`.", ""]
        _table(lines, sat)
        _saturation(lines, sat)
    lines += [f"The section took {time.monotonic() - start:.0f} s of wall time (all times in "
              "the tables are simulated). Whole section: `wildlink bench --sections "
              "manytraps`.", ""]
    return "\n".join(lines)


def _link_note() -> str:
    from tools.manytraps import _sender_lbt

    if _sender_lbt():
        return ("Link layer: the `Sender`'s own medium access (random backoff after a lost ack, "
                "the fairness gap between rounds, and, where the rows say so, its "
                "listen-before-talk; `lbt` is set explicitly in every row).")
    return ("Link layer: a `Sender` without medium access of its own beyond the random "
            "backoff after a lost ack; listen-before-talk rows use the shim below.")


def _lbt_note() -> str:
    from tools.manytraps import _sender_lbt

    where = ("the link layer's own listen-before-talk (`Sender(lbt=True)`)" if _sender_lbt()
             else "a listen-before-talk shim in front of each trap's radio (tools/manytraps.py "
             "`ListenFirst`: while `channel_active()`, wait 1-3 frame times, at most 8 times; "
             "the link layer had none of its own when this ran)")
    return (f"SF9, with {where}. The simulated CAD sees a whole frame, not only its preamble "
            "(optimistic). *hidden 0.5*: half of the trap pairs cannot hear each other (they "
            "still collide at the base), where carrier sense cannot help. The first rows are "
            "the plain runs from the table above.")


def _findings(lines: list[str], outcomes: list[Outcome], quick: bool) -> None:
    ten = [o for o in outcomes if o.scenario.traps == 10]
    for o in ten:
        s = o.scenario
        verdict = ("every picture delivered exactly once" if o.exactly_once
                   else f"{o.delivered}/{o.pictures} delivered, {o.duplicates} twice")
        lines.append(f"* 10 traps, {s.band}, SF{s.sf}: {verdict}, {o.in_day} of them within "
                     f"the day; mean delay {duration(o.mean_delay)}, 95th percentile "
                     f"{duration(o.p95_delay)}, longest {duration(o.max_delay)}.")
    if ten:
        lines.append("")


def _versus_aloha(lines: list[str], outcomes: list[Outcome]) -> None:
    busy = [o for o in outcomes if o.collided and not o.scenario.lbt]
    above = [o for o in busy if o.collision_rate >= o.aloha_collision]
    if not busy:
        return
    text = ("Collision shares mostly stay below what pure ALOHA predicts at the same load: a "
            "trap's fragments go back to back and never collide with each other, and an ack "
            "follows the frame it answers, so the traffic is less random than ALOHA's "
            "independent frames.")
    if above:
        text += " Exceptions: " + "; ".join(
            f"{o.scenario.traps} traps, {o.scenario.band}, SF{o.scenario.sf}: "
            f"{o.collision_rate:.1%} against {o.aloha_collision:.1%}" for o in above) + "."
    text += (" Up to 20 traps the channel is far from its limit; in the 1% sub-band at SF9 "
             "each trap's own duty cycle is the bottleneck (13-16 s of airtime a picture, 2 an "
             "hour, against 36 s an hour), which is where the delays of hours come from.")
    lines += [text, ""]


def _saturation(lines: list[str], outcomes: list[Outcome]) -> None:
    """Say where delivery stops keeping up, and where ALOHA theory puts the knee."""
    for lbt in (False, True):
        by_n = sorted((o for o in outcomes if o.scenario.lbt == lbt),
                      key=lambda o: o.scenario.traps)
        if not by_n:
            continue
        failing = next((o for o in by_n if o.delivered < o.pictures or o.p95_delay > 3600),
                       None)
        per_trap = by_n[0].first_try_load / by_n[0].scenario.traps
        knee = 0.5 / per_trap if per_trap > 0 else float("nan")
        label = "With listen-before-talk" if lbt else "Without listen-before-talk"
        text = (f"{label}: pure ALOHA peaks at G = 0.5; the traps' first tries alone offer "
                f"G = {per_trap:.4f} each, so theory puts the knee near {knee:.0f} traps "
                "counting first tries only (lower once retries and acks add to G).")
        if failing is not None:
            text += (f" Measured: the first count that no longer keeps up (a picture still "
                     f"missing after the drain, or the p95 delay past an hour) is "
                     f"{failing.scenario.traps} traps (G {failing.offered_load:.2f}, "
                     f"{failing.collision_rate:.0%} of frames collided, "
                     f"{failing.delivered}/{failing.pictures} delivered, p95 "
                     f"{duration(failing.p95_delay)}).")
        else:
            text += f" Every count up to {by_n[-1].scenario.traps} kept up."
        lines += [text, ""]
