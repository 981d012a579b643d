"""`wildlink radio`: check a real radio (status, version, ping, RSSI and SNR).

Run `wildlink radio --echo` on one station and `wildlink radio` on the other: the second sends
pings, the first answers each with a pong that carries how it heard the ping, so both directions
of the link are measured.
"""

from __future__ import annotations

import argparse
import math
import struct
import time
from collections.abc import Callable

PING = b"WLPING"
PONG = b"WLPONG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driver", choices=["sx1262", "e22"], default="sx1262",
                        help="SX1262 on SPI, or the E22 UART HAT (default: %(default)s)")
    lora = parser.add_argument_group("LoRa settings (both ends must agree)")
    lora.add_argument("--frequency", type=float, metavar="MHZ",
                      help="carrier (SX1262 default: 869.525, the EU868 10%% sub-band of "
                      "deploy/*.toml; E22 default: its channel)")
    lora.add_argument("--sf", type=int, help="spreading factor 5..12 (SX1262, default 9)")
    lora.add_argument("--bw", type=float, metavar="KHZ", help="bandwidth (SX1262, default 125)")
    lora.add_argument("--cr", type=int, help="coding rate denominator 5..8 (SX1262)")
    lora.add_argument("--power", type=int, metavar="DBM", help="TX power")
    lora.add_argument("--sync", help="sync word: private (0x1424), public (0x3444) or a number")
    spi = parser.add_argument_group("SX1262 over SPI (BCM pin numbers)")
    spi.add_argument("--module", help="sx1262 | core1262 | e22-900m22s (PA, TCXO, RF switch)")
    spi.add_argument("--spi-bus", type=int, help="SPI bus (default 0)")
    spi.add_argument("--spi-device", type=int, help="chip select CE number (default 0)")
    spi.add_argument("--spi-speed", type=int, metavar="HZ", help="SPI clock (default 2000000)")
    spi.add_argument("--busy", type=int, help="BUSY pin (default 20)")
    spi.add_argument("--dio1", type=int, help="DIO1 pin (default 16)")
    spi.add_argument("--reset", type=int, help="NRESET pin (default 18)")
    spi.add_argument("--cs", type=int, help="GPIO chip select instead of CE")
    spi.add_argument("--txen", type=int, help="TXEN pin of the module's RF switch")
    spi.add_argument("--rxen", type=int, help="RXEN pin of the module's RF switch")
    spi.add_argument("--tcxo", type=float, metavar="VOLTS", help="TCXO on DIO3 (0 = crystal)")
    uart = parser.add_argument_group("E22 UART HAT")
    uart.add_argument("--port", help="serial port (default /dev/serial0)")
    uart.add_argument("--m0", type=int, help="M0 pin (default 22)")
    uart.add_argument("--m1", type=int, help="M1 pin (default 27)")
    uart.add_argument("--aux", type=int, help="AUX pin, if wired")
    uart.add_argument("--channel", type=int, help="channel 0..83 (instead of --frequency)")
    uart.add_argument("--air-rate", type=int, help="air data rate in bit/s (default 2400)")
    uart.add_argument("--address", help="module address (default 0)")
    uart.add_argument("--netid", type=int, help="network id (default 0)")
    uart.add_argument("--sub-packet", type=int, help="240 | 128 | 64 | 32 bytes")
    act = parser.add_argument_group("what to do")
    act.add_argument("--count", type=int, default=3, help="pings to send, 0 = status only")
    act.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a pong")
    act.add_argument("--echo", action="store_true", help="answer pings instead of sending them")
    act.add_argument("--duration", type=float, help="with --echo: stop after this many seconds")


_COMMON = {"frequency": "freq", "power": "power", "sync": "sync"}
_SX1262 = {"sf": "sf", "bw": "bw", "cr": "cr", "module": "module", "spi_bus": "bus",
           "spi_device": "device", "spi_speed": "speed", "busy": "busy", "dio1": "dio1",
           "reset": "reset", "cs": "cs", "txen": "txen", "rxen": "rxen", "tcxo": "tcxo"}
_E22 = {"port": "port", "m0": "m0", "m1": "m1", "aux": "aux", "channel": "channel",
        "air_rate": "air_rate", "address": "address", "netid": "netid",
        "sub_packet": "sub_packet"}


def spec_from_args(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The flags given, as a `device.radio.factory` spec; flags of the other driver are refused."""
    from tools.errors import UserError

    own, other = (_SX1262, _E22) if args.driver == "sx1262" else (_E22, _SX1262)
    wrong = [f"--{k.replace('_', '-')}" for k in other if getattr(args, k, None) is not None]
    if wrong:
        raise UserError(f"{', '.join(wrong)} do not apply to --driver {args.driver}")
    options = {}
    for attr, key in {**_COMMON, **own}.items():
        value = getattr(args, attr, None)
        if value is not None:
            options[key] = str(value)
    if args.driver == "e22" and "sync" in options:
        raise UserError("--sync does not apply to the E22 (its NETID plays that role)")
    if args.driver == "sx1262" and "freq" not in options:
        from device.service.config import DEFAULT_FREQUENCY_MHZ  # the services' default

        options["freq"] = str(DEFAULT_FREQUENCY_MHZ)
    return args.driver, options


def run(args: argparse.Namespace) -> int:
    from device.radio.factory import open_radio

    radio = open_radio(spec_from_args(args))
    try:
        for line in describe(radio):
            print(line)
        if args.echo:
            echo(radio, args.duration, print)
            return 0
        if args.count <= 0:
            return 0
        answered = ping(radio, args.count, args.timeout, print)
        print(f"{answered}/{args.count} pings answered")
        return 0 if answered else 1
    finally:
        radio.close()


def describe(radio) -> list[str]:
    """Human-readable status lines for either driver."""
    lines = [f"driver: {type(radio).__name__}, mtu {radio.mtu} bytes, "
             f"modulation SF{radio.modulation.sf}/{radio.modulation.bw_hz / 1e3:g} kHz"]
    if hasattr(radio, "status"):
        s = radio.status()
        clock = f"TCXO {s.tcxo} V" if s.tcxo else "crystal"
        lines.append(f"chip: {s.version!r}, mode {s.mode}, clock {clock}, device errors "
                     f"{', '.join(s.device_errors) or 'none'}, RSSI now {s.rssi_inst:.1f} dBm")
    if hasattr(radio, "read_registers"):
        regs = radio.read_registers()
        lines.append(f"module: registers 00H-06H {regs.hex(' ')}, product {radio.product.hex(' ')}")
    return lines


def _q(value: float, scale: int) -> int:
    """A link figure as a signed byte (-128 = unknown)."""
    if math.isnan(value):
        return -128
    return max(-127, min(127, round(value * scale)))


def _unq(raw: int, scale: int) -> float:
    return math.nan if raw == -128 else raw / scale


def ping(radio, count: int, timeout: float, out: Callable[[str], object]) -> int:
    """Send `count` pings; report each pong's RSSI/SNR here and as heard there."""
    answered = 0
    for seq in range(count):
        frame = PING + struct.pack(">H", seq)
        seconds = radio.send(frame)
        start = time.monotonic()
        reply = None
        while (left := timeout - (time.monotonic() - start)) > 0:
            got = radio.receive(left)
            if got is None:
                break
            if got.frame[:6] == PONG and got.frame[6:8] == struct.pack(">H", seq):
                reply = got
                break
        if reply is None:
            out(f"ping {seq}: {len(frame)} bytes, {seconds * 1e3:.1f} ms on air; no pong within "
                f"{timeout:g} s (is the other end running `wildlink radio --echo`?)")
            continue
        answered += 1
        far_rssi, far_snr = struct.unpack(">bb", reply.frame[8:10])
        out(f"ping {seq}: {seconds * 1e3:.1f} ms on air, pong after "
            f"{time.monotonic() - start:.2f} s: here RSSI {reply.rssi:.1f} dBm SNR "
            f"{reply.snr:.1f} dB; there RSSI {_unq(far_rssi, 1):.1f} dBm SNR "
            f"{_unq(far_snr, 4):.1f} dB")
    return answered


def echo(radio, duration: float | None, out: Callable[[str], object]) -> int:
    """Answer pings until `duration` seconds have passed (forever if None); return the count."""
    end = math.inf if duration is None else time.monotonic() + duration
    answered = 0
    while (left := end - time.monotonic()) > 0:
        got = radio.receive(min(left, 1.0))
        if got is None or got.frame[:6] != PING:
            continue
        reply = PONG + got.frame[6:8] + struct.pack(">bb", _q(got.rssi, 1), _q(got.snr, 4))
        radio.send(reply)
        answered += 1
        out(f"pong {int.from_bytes(got.frame[6:8], 'big')}: ping heard at RSSI "
            f"{got.rssi:.1f} dBm SNR {got.snr:.1f} dB")
    return answered
