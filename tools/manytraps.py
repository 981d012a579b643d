"""Many traps, one base, one channel: a simulated day of the real link layer on the shared air.

Each trap is the real `Sender` with its SQLite `OutboundStore` and its own `DutyCycle`; the
base is the real `Receiver` with its `FragmentStore` and duty cycle for its acks. They run as
threads taking turns on one virtual clock (`EventClock`), over `SimChannel`'s shared air:
overlapping frames on the carrier and SF collide (both lost), a radio hears nothing while it
sends. Pictures come as a Poisson process per trap (`rate` an hour), each `size` random bytes
(a container of that size: the codec does not run). Delay = the base's completion time minus
the picture's event time (capture and encoding take no time here).

Pure ALOHA for comparison: with offered load G (channel airtime per second, all traps and the
base's acks, retries included), a frame survives with probability e^{-2G} and the throughput
is S = G e^{-2G}, at most 1/(2e) = 0.18 at G = 0.5.

    python -m tools.manytraps --traps 10 --rate 2 --sf 7 --band h1.7
    python -m tools.manytraps --traps 20 --sf 9 --band h1.5 --lbt
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from device.link import DutyCycle, FragmentStore, OutboundStore, Receiver, Sender
from device.radio.airtime import Modulation
from device.radio.sim import SimChannel, SimRadio, loss_model
from device.radio.simclock import EventClock
from tools.linksim import band_frequency

__all__ = ["Outcome", "Scenario", "aloha_throughput", "run", "simulate"]

DAY = 86_400.0
KEY = bytes(range(16))


def aloha_throughput(g: float) -> float:
    """Pure ALOHA: S = G e^{-2G} (Abramson 1970), G and S in frame times per frame time."""
    return g * math.exp(-2.0 * g)


@dataclass(frozen=True)
class Scenario:
    """One run: `traps` traps for `hours` of picture events, then up to `drain_hours` more."""

    traps: int
    rate: float = 2.0  #: pictures per trap per hour (Poisson)
    sf: int = 7
    band: str = "h1.7"  #: EU868 sub-band: h1.7 is 10%, h1.5 is 1% (device/link/dutycycle.py)
    region: str = "eu868"
    size_min: int = 2000  #: container bytes, uniform in [size_min, size_max]
    size_max: int = 3000
    hours: float = 24.0
    drain_hours: float = 24.0
    loss: float = 0.0  #: per-link frame loss besides collisions (each direction)
    lbt: bool = False  #: listen before talk: sense the channel before each frame
    hidden: float = 0.0  #: share of trap pairs out of each other's range (hidden terminals)
    capture_db: float | None = None
    seed: int = 0

    @property
    def frequency_mhz(self) -> float:
        return band_frequency(self.region, self.band)


@dataclass(frozen=True)
class Outcome:
    """What a scenario gave (times in seconds, airtime in seconds)."""

    scenario: Scenario
    pictures: int  #: picture events in the day
    delivered: int  #: distinct pictures complete at the base by the end of the drain
    in_day: int  #: of them, complete before the day ended
    duplicates: int  #: pictures handed out twice by the base (must be 0)
    corrupted: int  #: delivered with other bytes than queued (must be 0)
    mean_delay: float
    p95_delay: float
    max_delay: float
    airtime: float  #: all transmissions, traps and base
    transmissions: int
    collided: int  #: transmissions that overlapped another on the carrier and SF
    offered_load: float  #: G: airtime per second over the day (retries and acks included)
    first_try_load: float  #: G of the pictures' data frames sent once (the load the traps offer)
    deferred: int  #: rounds the senders gave up for a window
    lbt_waits: int  #: sends postponed because the channel was busy
    elapsed: float  #: simulated seconds until the last delivery (or the drain's end)

    @property
    def collision_rate(self) -> float:
        return self.collided / self.transmissions if self.transmissions else 0.0

    @property
    def airtime_per_picture(self) -> float:
        return self.airtime / self.delivered if self.delivered else float("inf")

    @property
    def aloha_collision(self) -> float:
        """The collision probability pure ALOHA predicts at this load: 1 - e^{-2G}."""
        return 1.0 - math.exp(-2.0 * self.offered_load)

    @property
    def exactly_once(self) -> bool:
        return (self.delivered == self.pictures and self.duplicates == 0
                and self.corrupted == 0)

    def as_dict(self) -> dict:
        return {**asdict(self), "collision_rate": self.collision_rate,
                "airtime_per_picture": self.airtime_per_picture,
                "aloha_collision": self.aloha_collision, "exactly_once": self.exactly_once}


class ListenFirst:
    """Listen before talk in front of a radio: while `channel_active()`, wait a random 1..3
    frame times (at most `tries` times), then send anyway. Used only where the link layer has
    no listen-before-talk of its own."""

    def __init__(self, radio: SimRadio, clock: EventClock, rng: random.Random,
                 tries: int = 8) -> None:
        self.radio, self.clock, self.rng, self.tries = radio, clock, rng, tries
        self.mtu, self.modulation = radio.mtu, radio.modulation
        self.waits = 0

    def send(self, frame: bytes) -> float:
        slot = self.modulation.time_on_air(len(frame))
        for _ in range(self.tries):
            if not self.radio.channel_active():
                break
            self.waits += 1
            self.clock.sleep(slot * self.rng.uniform(1.0, 3.0))
        return self.radio.send(frame)

    def receive(self, timeout: float):
        return self.radio.receive(timeout)

    def channel_active(self) -> bool:
        return self.radio.channel_active()

    def close(self) -> None:
        self.radio.close()


def _events(rng: random.Random, rate: float, hours: float) -> list[float]:
    """Poisson event times (seconds) over `hours` at `rate` an hour."""
    times, t = [], 0.0
    while rate > 0:
        t += rng.expovariate(rate / 3600.0)
        if t >= hours * 3600.0:
            return times
        times.append(t)
    return times


def _sender_lbt() -> bool:
    """Does the link layer's Sender do listen-before-talk itself (issue 18 item 2)?"""
    import inspect

    return "lbt" in inspect.signature(Sender).parameters


def simulate(scenario: Scenario, workdir: Path | None = None) -> Outcome:
    """Run one scenario on the virtual clock (seconds of CPU, not hours); the SQLite files go
    to `workdir` (default: /dev/shm where there is one: fsyncs on a disk cost more than the
    whole simulation, and the figures do not depend on them)."""
    s = scenario
    workdir = workdir if workdir is not None else _workdir()
    rng = random.Random(s.seed)
    modulation = Modulation(sf=s.sf)
    freq = s.frequency_mhz
    day = s.hours * 3600.0
    clock = EventClock()
    channel = SimChannel(clock, seed=s.seed, frequency_mhz=freq, capture_db=s.capture_db)
    base_radio = channel.radio("base", modulation=modulation,
                               loss=loss_model(s.loss, seed=s.seed * 7919 + 1))
    ids = list(range(1, s.traps + 1))
    radios = {t: channel.radio(f"trap{t}", modulation=modulation,
                               loss=loss_model(s.loss, seed=s.seed * 7919 + 10 + t)) for t in ids}
    hide = random.Random(s.seed + 1)  # its own draws: the pictures do not depend on it
    for i in ids:  # hidden terminals: both still reach the base, but not each other
        for j in ids:
            if i < j and hide.random() < s.hidden:
                channel.link(radios[i], radios[j], hears=False)
                channel.link(radios[j], radios[i], hears=False)
    schedule = {t: _events(random.Random(rng.random()), s.rate, s.hours) for t in ids}
    payloads = {t: [random.Random(rng.random()).randbytes(
        rng.randint(s.size_min, s.size_max)) for _ in schedule[t]] for t in ids}
    sent: dict[tuple[int, int], tuple[float, bytes]] = {}  # (trap, image id) -> (event, data)
    got: dict[tuple[int, int], float] = {}
    bad = {"duplicates": 0, "corrupted": 0}
    senders: dict[int, Sender] = {}
    lbt_radios: list[ListenFirst] = []
    first_try = 0.0
    running = set(ids)
    own_lbt = _sender_lbt()

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)

        def trap(t: int) -> None:
            nonlocal first_try
            radio = radios[t]
            if s.lbt and not own_lbt:  # the link layer has none: the shim stands in
                radio = ListenFirst(radio, clock, random.Random(s.seed * 31 + t))
                lbt_radios.append(radio)
            queue = OutboundStore(folder / f"trap{t}.sqlite")  # opened in its own thread
            kwargs = {"lbt": s.lbt} if _sender_lbt() else {}  # never the link's default
            sender = Sender(radio, queue, t, KEY, clock, DutyCycle(s.region, freq, clock),
                            modulation=modulation, seed=s.seed * 1000 + t, **kwargs)
            senders[t] = sender
            pending = list(zip(schedule[t], payloads[t], strict=True))
            try:
                while True:
                    now = clock.now()
                    while pending and pending[0][0] <= now:
                        event, data = pending.pop(0)
                        item = queue.put(data, now=event)
                        sent[t, item.image_id] = (event, data)
                        first_try += _data_airtime(len(data), sender, modulation)
                    result = sender.pump()
                    if result.wait is None and not pending:
                        return
                    wait = math.inf if result.wait is None else result.wait
                    if pending:
                        wait = min(wait, pending[0][0] - now)
                    if wait > 0:
                        clock.sleep(wait)
            finally:
                running.discard(t)
                queue.close()

        def base() -> None:
            store = FragmentStore(folder / "base.sqlite")
            receiver = Receiver(base_radio, store, dict.fromkeys(ids, KEY), clock,
                                DutyCycle(s.region, freq, clock), modulation=modulation)
            while running:
                for image in receiver.poll(timeout=600.0):
                    key = (image.trap_id, image.image_id)
                    if key in got:
                        bad["duplicates"] += 1
                        continue
                    got[key] = image.received_at
                    if sent.get(key, (0, None))[1] != image.data:
                        bad["corrupted"] += 1

        clock.spawn(base, name="base")
        for t in ids:
            clock.spawn(trap, t, name=f"trap{t}")
        clock.run(until=day + s.drain_hours * 3600.0)

    delays = sorted(got[k] - sent[k][0] for k in got if k in sent)
    stats = channel.stats
    elapsed = max(got.values(), default=clock.now())
    return Outcome(
        scenario=s, pictures=len(sent), delivered=len(got),
        in_day=sum(1 for v in got.values() if v <= day), duplicates=bad["duplicates"],
        corrupted=bad["corrupted"],
        mean_delay=statistics.fmean(delays) if delays else float("nan"),
        p95_delay=_percentile(delays, 0.95), max_delay=delays[-1] if delays else float("nan"),
        airtime=channel.air.airtime, transmissions=stats["transmissions"],
        collided=stats["collided"], offered_load=channel.air.airtime / max(day, elapsed),
        first_try_load=first_try / day,
        deferred=sum(x.stats["deferred"] for x in senders.values()),
        lbt_waits=sum(r.waits for r in lbt_radios) + sum(
            x.stats.get("lbt_busy", 0) for x in senders.values()),
        elapsed=elapsed)


def _data_airtime(nbytes: int, sender: Sender, modulation: Modulation) -> float:
    """Airtime of one picture's data frames, each sent once."""
    from device.link import frames

    size = sender.fragment_size
    overhead = frames.data_overhead(signed=True)
    count = max(1, math.ceil(nbytes / size))
    last = nbytes - size * (count - 1)
    return ((count - 1) * modulation.time_on_air(size + overhead)
            + modulation.time_on_air(last + overhead))


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def run(scenarios: list[Scenario], workdir: Path | None = None) -> list[Outcome]:
    return [simulate(s, workdir) for s in scenarios]


def duration(seconds: float) -> str:
    """12 s, 4.2 min, 3.1 h."""
    if seconds != seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


HEADER = ("| traps | band | SF | LBT | pictures | delivered (in the window) | exactly once | "
          "mean delay | p95 delay | max delay | airtime/picture | G | collisions | "
          "ALOHA 1-e^-2G | S measured | ALOHA S |\n"
          "|---:|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def row(o: Outcome) -> str:
    s = o.scenario
    duty = DutyCycle(s.region, s.frequency_mhz, EventClock()).duty
    throughput = (o.airtime * (1 - o.collision_rate)) / max(s.hours * 3600.0, o.elapsed)
    lbt = ("yes" if s.lbt else "no") + (f", {s.hidden:.0%} pairs hidden" if s.hidden else "")
    return (f"| {s.traps} | {s.band} ({duty:.0%}) | {s.sf} | {lbt} | "
            f"{o.pictures} | {o.delivered} ({o.in_day}) | "
            f"{'yes' if o.exactly_once else 'NO'} | {duration(o.mean_delay)} | "
            f"{duration(o.p95_delay)} | {duration(o.max_delay)} | "
            f"{o.airtime_per_picture:.1f} s | {o.offered_load:.3f} | "
            f"{o.collision_rate:.1%} | {o.aloha_collision:.1%} | {throughput:.3f} | "
            f"{aloha_throughput(o.offered_load):.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.manytraps",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--traps", type=int, nargs="+", default=[10])
    parser.add_argument("--rate", type=float, default=2.0, help="pictures per trap per hour")
    parser.add_argument("--sf", type=int, default=7)
    parser.add_argument("--band", default="h1.7", help="EU868 sub-band (h1.7 10%%, h1.5 1%%)")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--drain", type=float, default=24.0, help="hours to let backlogs finish")
    parser.add_argument("--size", default="2000-3000", help="container bytes, MIN-MAX")
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--lbt", action="store_true", help="listen before talk")
    parser.add_argument("--hidden", type=float, default=0.0,
                        help="share of trap pairs that cannot hear each other (0..1)")
    parser.add_argument("--capture-db", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        lo, _, hi = args.size.partition("-")
        size_min, size_max = int(lo), int(hi or lo)
        scenarios = [Scenario(n, args.rate, args.sf, args.band, size_min=size_min,
                              size_max=size_max, hours=args.hours, drain_hours=args.drain,
                              loss=args.loss, lbt=args.lbt, hidden=args.hidden, capture_db=args.capture_db,
                              seed=args.seed) for n in args.traps]
        for s in scenarios:
            if s.traps < 1 or not 0 < s.size_min <= s.size_max:
                raise ValueError("need --traps >= 1 and 0 < MIN <= MAX sizes")
            s.frequency_mhz  # noqa: B018  (an unknown band fails here, with its name)
    except ValueError as exc:
        print(f"manytraps: error: {exc}", file=sys.stderr)
        return 2
    print(HEADER)
    for s in scenarios:
        print(row(simulate(s, _workdir())), flush=True)
    return 0


def _workdir() -> Path | None:
    import os

    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


if __name__ == "__main__":
    sys.exit(main())
