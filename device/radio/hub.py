"""A loopback radio hub: one shared air for `UdpRadio`s in separate processes.

Every `UdpRadio(listen_port, hub=PORT)` joins the hub on 127.0.0.1:PORT. A transmission is
announced when it starts (its real duration and tuning come with it); the hub holds it until
its airtime has passed on the hub's monotonic clock and then hands it to every joined radio
that receives it by the shared-air rules (device/radio/air.py: collisions, optional capture,
half-duplex). Durations are wall seconds, so processes on a `ScaledClock` must share one
speedup. Per-link loss stays with each receiving radio, as between two peers.

    python -m device.radio.hub --port 47000        # then start the base and the traps

Datagrams (first byte is the kind):

    J + JSON {"name", "tuning": [MHz, SF, BW Hz]}   radio -> hub, join; hub answers j
    T + !dfBf (seconds, MHz, SF, BW) + frame       radio -> hub, a transmission starts now
    R + frame                                      hub -> radio, a frame received
    C + !fBf (MHz, SF, BW)                         radio -> hub, carrier sense; answer c + 0/1
    L                                              radio -> hub, leave
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import socket
import struct
import threading
import time

from device.radio.air import Air, Transmission, Tuning

__all__ = ["Hub", "pack_cad", "pack_tx"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
JOIN, JOINED, TX, RX, CAD, CAD_REPLY, LEAVE = b"J", b"j", b"T", b"R", b"C", b"c", b"L"
_TX = struct.Struct("!dfBf")
_TUNING = struct.Struct("!fBf")


def _tuning(mhz: float, sf: int, bw: float) -> Tuning:
    # the wire carries float32: round back to the kHz the configs use
    return Tuning(round(mhz, 4), int(sf), round(bw, 1))


def pack_tx(seconds: float, tuning: Tuning, frame: bytes) -> bytes:
    """A radio's announcement of a transmission that starts now and lasts `seconds` (wall)."""
    return TX + _TX.pack(seconds, *tuning) + frame


def pack_cad(tuning: Tuning) -> bytes:
    return CAD + _TUNING.pack(*tuning)


class Hub:
    """The shared air for loopback processes (see the module docstring).

    Example:
        >>> hub = Hub(port=0).start()                 # doctest: +SKIP
        >>> trap = UdpRadio(0, hub=hub.port, speedup=20)
        >>> hub.close()
    """

    def __init__(self, port: int = 0, capture_db: float | None = None) -> None:
        self.air = Air(capture_db)
        self.members: dict[tuple[str, int], Tuning] = {}
        self.names: dict[tuple[str, int], str] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((HOST, port))
        self.port = self._sock.getsockname()[1]
        self._due: list[tuple[float, int, Transmission]] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Hub:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve, name="radio-hub", daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serve until `close()`."""
        while not self._stop.is_set():
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, tx = heapq.heappop(self._due)
                self._deliver(tx)
            wait = self._due[0][0] - now if self._due else 0.2
            self._sock.settimeout(max(min(wait, 0.2), 1e-4))
            try:
                data, addr = self._sock.recvfrom(4096)
            except (TimeoutError, BlockingIOError, ConnectionRefusedError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            self._handle(data, addr)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._sock.close()

    # -- internals --------------------------------------------------------------------------

    def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        kind, body = data[:1], data[1:]
        try:
            if kind == JOIN:
                hello = json.loads(body.decode())
                self.members[addr] = _tuning(*hello["tuning"])
                self.names[addr] = str(hello.get("name") or f"{addr[1]}")
                self._sock.sendto(JOINED, addr)
                log.info("radio %s joined on %s", self.names[addr], self.members[addr])
            elif kind == TX:
                seconds, *tuning = _TX.unpack_from(body)
                tuning = _tuning(*tuning)
                self.members.setdefault(addr, tuning)
                now = time.monotonic()
                tx = self.air.begin(addr, tuning, now, now + seconds, body[_TX.size:])
                heapq.heappush(self._due, (tx.end, next(self._seq), tx))
            elif kind == CAD:
                tuning = _tuning(*_TUNING.unpack_from(body))
                busy = self.air.busy(tuning, time.monotonic(), exclude=addr)
                self._sock.sendto(CAD_REPLY + (b"\x01" if busy else b"\x00"), addr)
            elif kind == LEAVE:
                self.members.pop(addr, None)
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
            log.warning("radio hub: bad datagram from %s (%s)", addr, exc)
        except OSError:  # the radio went away between asking and our answer
            pass

    def _deliver(self, tx: Transmission) -> None:
        for addr in self.air.finish(tx, list(self.members.items())):
            try:
                self._sock.sendto(RX + tx.frame, addr)
            except OSError:
                self.members.pop(addr, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.radio.hub",
                                     description="shared simulated air for UdpRadio processes")
    parser.add_argument("--port", type=int, default=47000)
    parser.add_argument("--capture-db", type=float, default=None,
                        help="capture margin in dB (default: none; every overlap loses both)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        hub = Hub(args.port, args.capture_db)
    except OSError as exc:
        print(f"radio hub: cannot listen on {HOST}:{args.port}: {exc.strerror}")
        return 2
    print(f"radio hub on {HOST}:{hub.port}", flush=True)
    try:
        hub.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
