"""`wildlink airtime` and `wildlink simulate`: what the LoRa link costs, without a radio.

    wildlink airtime --bytes 3000 --sf 9 --region eu868 --band h1.5
    wildlink airtime --budget 1000 2000 3000 8000 --sf 7 8 9 10 11 12   # pictures/h and /day
    wildlink simulate --bytes 10000 --loss 0.2 --burst --sf 9

Choosing settings with them: docs/settings.md.
"""

from __future__ import annotations

import argparse

from tools.commands._args import number
from tools.errors import UserError

REGIONS = ("eu868", "us915")
SF = range(5, 13)  #: the SX1262 spreads 5..12 (SF5 and SF6 too, unlike the SX127x)


def _common(parser: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        parser.add_argument("--bytes", "--budget", dest="bytes", type=int, nargs="+",
                            required=True, metavar="N",
                            help="picture size(s) in bytes, e.g. the trap's codec.budget")
        parser.add_argument("--sf", type=int, nargs="+", default=[9], choices=SF,
                            metavar="5..12", help="spreading factor(s) (default 9)")
    else:
        parser.add_argument("--bytes", type=int, required=True, metavar="N",
                            help="image size in bytes")
        parser.add_argument("--sf", type=int, default=9, choices=SF, metavar="5..12",
                            help="spreading factor (default 9)")
    parser.add_argument("--bw", type=float, default=125.0, metavar="KHZ",
                        help="bandwidth in kHz (default 125)")
    parser.add_argument("--cr", type=int, default=5, choices=range(5, 9), metavar="5..8",
                        help="coding rate 4/CR (default 5)")
    parser.add_argument("--mtu", type=int, default=255,
                        help="largest radio payload (SX1262 255; E22 sub-packet 240/128/64/32; "
                        "default 255)")


def add_airtime_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, many=True)
    parser.add_argument("--region", choices=REGIONS, default="eu868",
                        help="duty-cycle and dwell rules (default eu868)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--freq", type=number(float, 0, low_open=True), metavar="MHZ",
                       help="transmit frequency (default: 869.525 in eu868, 902.3 in us915)")
    where.add_argument("--band", metavar="NAME",
                       help="sub-band instead of a frequency: eu868 h1.3 (0.1%%), h1.4, h1.5 "
                       "(1%%, 868.1-868.5), h1.6, h1.7 (10%%, 869.525), h1.8")


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--loss", type=float, default=0.1, metavar="P",
                        help="frame loss probability in each direction (default 0.1)")
    parser.add_argument("--burst", action="store_true",
                        help="Gilbert-Elliott bursts instead of independent losses")
    parser.add_argument("--burst-len", type=float, default=4.0, metavar="FRAMES",
                        help="mean burst length with --burst (default 4)")
    parser.add_argument("--region", choices=REGIONS,
                        help="also obey this region's duty cycle (default: unlimited)")
    parser.add_argument("--freq", type=float, metavar="MHZ", help="frequency with --region")
    parser.add_argument("--encrypt", action="store_true", help="AES-CTR the payloads")
    parser.add_argument("--seed", type=int, default=0, help="random seed (losses and bytes)")


def _modulation(args: argparse.Namespace, sf: int | None = None):
    from device.radio.airtime import Modulation

    sizes = args.bytes if isinstance(args.bytes, list) else [args.bytes]
    if min(sizes) < 1:
        raise UserError(f"--bytes must be at least 1, got {min(sizes)}")
    if not 1 <= args.mtu <= 255:
        raise UserError(f"--mtu must be 1..255, got {args.mtu}")
    try:
        return Modulation(sf=args.sf if sf is None else sf, bw_hz=args.bw * 1e3, cr=args.cr)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _rate(value: float) -> str:
    """Pictures per hour or day: whole numbers when large, two digits when small."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def run_airtime(args: argparse.Namespace) -> int:
    from tools.linksim import DEFAULT_FREQ, band_frequency, plan_airtime

    try:
        freq = (band_frequency(args.region, args.band) if args.band is not None
                else args.freq if args.freq is not None else DEFAULT_FREQ[args.region])
        plans = {(sf, n): plan_airtime(n, _modulation(args, sf), args.region, freq, args.mtu)
                 for sf in args.sf for n in args.bytes}
    except ValueError as exc:
        raise UserError(str(exc)) from None
    first = next(iter(plans.values()))
    rule = f"duty cycle {first.duty:.1%}" if first.duty else "no duty cycle"
    if first.dwell:
        rule += f", dwell {first.dwell * 1000:.0f} ms"
    where = f"{args.region} {freq:g} MHz (sub-band {first.band}: {rule})"
    if len(plans) > 1:
        _table(args, plans, where)
        return 0
    plan, sf, nbytes = first, args.sf[0], args.bytes[0]
    print(f"{nbytes} bytes, SF{sf} BW {args.bw:g} kHz CR 4/{args.cr}, {where}")
    print(f"fragments       {plan.fragments} x up to {plan.fragment_size} B "
          f"(frames up to {plan.frame_size} B, 15 B header+MIC+CRC)")
    print(f"time on air     {plan.data_airtime:.2f} s data ({plan.frame_airtime * 1000:.0f} ms "
          f"per full frame) + {plan.ack_airtime * 1000:.0f} ms per ack")
    print(f"to deliver      {_duration(plan.first_delivery)} from an idle hour, lossless")
    if plan.duty:
        print(f"steady state    {_duration(plan.steady_delivery)} per image when the "
              f"{plan.duty:.1%} budget ({plan.duty * 3600:.0f} s/h) is the bottleneck")
    print(f"pictures        {_rate(plan.per_hour)} per hour, {_rate(plan.per_day)} per day at "
          f"most (lossless; a frame loss p costs about 1/(1-p) more airtime)")
    return 0


def _table(args: argparse.Namespace, plans: dict, where: str) -> None:
    """Pictures per hour and per day for every SF and budget (a Markdown table)."""
    print(f"pictures per hour (per day) at most, {where}, BW {args.bw:g} kHz CR 4/{args.cr}, "
          "lossless; time on air per picture in brackets")
    print()
    print("| SF | " + " | ".join(f"{n} B" for n in args.bytes) + " |")
    print("|---|" + "---:|" * len(args.bytes))
    for sf in args.sf:
        cells = [f"{_rate(p.per_hour)}/h ({_rate(p.per_day)}/day) [{_duration(p.data_airtime)}]"
                 for p in (plans[sf, n] for n in args.bytes)]
        print(f"| SF{sf} | " + " | ".join(cells) + " |")


def run_simulate(args: argparse.Namespace) -> int:
    from tools.linksim import random_bytes, simulate_transfer

    modulation = _modulation(args)
    if not 0.0 <= args.loss < 1.0:
        raise UserError(f"--loss must be in [0, 1), got {args.loss}")
    data = random_bytes(args.bytes, args.seed)
    common = dict(modulation=modulation, mtu=args.mtu, region=args.region, freq_mhz=args.freq,
                  encrypt=args.encrypt, seed=args.seed)
    lossy = simulate_transfer(data, args.loss, burst=args.burst, burst_len=args.burst_len,
                              **common)
    clean = simulate_transfer(data, 0.0, **common)
    kind = f"bursts of {args.burst_len:g}" if args.burst else "independent"
    print(f"{args.bytes} random bytes, SF{args.sf}, loss {args.loss:.0%} ({kind}) both ways")
    print(f"arrived identical  {'yes' if lossy.identical else 'NO'}")
    print(f"frames             {lossy.frames} data for {lossy.fragments} fragments, "
          f"{lossy.acks} acks")
    print(f"airtime            {lossy.airtime:.2f} s (trap {lossy.airtime_up:.2f} s, "
          f"base {lossy.airtime_down:.2f} s)")
    print(f"lossless airtime   {clean.airtime:.2f} s")
    ratio = lossy.airtime / clean.airtime
    ideal = 1.0 / (1.0 - args.loss)
    print(f"ratio              {ratio:.3f} (ideal 1/(1-p) = {ideal:.3f}, "
          f"{(ratio / ideal - 1) * 100:+.1f}%)")
    print(f"simulated time     {_duration(lossy.elapsed)}")
    return 0 if lossy.identical else 1
