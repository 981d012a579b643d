"""Hardware in the loop: two real radios on one Pi send a file to each other (`make hil`).

Skipped unless WILDLINK_HIL=1 (tests/conftest.py), and skipped when a radio is absent. The two
radios are described by `device.radio.factory` specs (docs/hardware.md, "Hardware-in-the-loop"):

    WILDLINK_HIL_RADIO_A   default "sx1262:"  (the default pins)
    WILDLINK_HIL_RADIO_B   e.g. "sx1262:device=1,busy=23,dio1=24,reset=25"  (required)
    WILDLINK_HIL_FILE      file to send (default: 4 KiB of a sample image)
"""

from __future__ import annotations

import os
import queue
import struct
import threading
from pathlib import Path

import pytest

from device.errors import WildlinkError
from device.radio.factory import open_radio

pytestmark = pytest.mark.hil
SAMPLES = Path(__file__).resolve().parent / "data"
HEADER = struct.Struct(">HH")  # fragment index, fragment count


def _open(name: str, default: str | None):
    spec = os.environ.get(name, default)
    if not spec:
        pytest.skip(f"set {name} to the second radio's spec (docs/hardware.md)")
    try:
        return open_radio(spec)
    except WildlinkError as exc:
        pytest.skip(f"radio {spec!r} not available: {exc}")


@pytest.fixture(scope="module")
def radios():
    a = _open("WILDLINK_HIL_RADIO_A", "sx1262:")
    try:
        b = _open("WILDLINK_HIL_RADIO_B", None)
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


def _payload() -> bytes:
    path = os.environ.get("WILDLINK_HIL_FILE")
    if path:
        return Path(path).read_bytes()
    image = sorted((SAMPLES / "camtrap").glob("*.jpg"))[0]
    return image.read_bytes()[:4096]


def _send_file(tx, rx, data: bytes, tries: int = 5, wait: float = 2.0) -> bytes:
    """Stop-and-wait over the raw radios: each fragment is re-sent until the receiver has it."""
    size = min(tx.mtu, rx.mtu) - HEADER.size
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    got: dict[int, bytes] = {}
    arrived: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            reception = rx.receive(min(0.5, wait))
            if reception is not None and len(reception.frame) >= HEADER.size:
                index, count = HEADER.unpack_from(reception.frame)
                if count == len(chunks) and index < count:
                    got[index] = reception.frame[HEADER.size :]
                    arrived.put(index)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        for index, chunk in enumerate(chunks):
            for _ in range(tries):
                tx.send(HEADER.pack(index, len(chunks)) + chunk)
                try:
                    while arrived.get(timeout=wait) != index:
                        pass
                    break
                except queue.Empty:
                    continue
            else:
                pytest.fail(f"fragment {index} of {len(chunks)} not received after {tries} tries")
    finally:
        stop.set()
        thread.join()
    return b"".join(got[i] for i in range(len(chunks)))


def test_file_arrives_byte_identical_both_ways(radios):
    a, b = radios
    data = _payload()
    assert _send_file(a, b, data) == data
    assert _send_file(b, a, data[::-1]) == data[::-1]


def test_ping_reports_link_quality(radios):
    from tools.commands.radio import echo, ping

    a, b = radios
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(echo(b, 10.0, print)))
    thread.start()
    lines: list[str] = []
    assert ping(a, 2, 4.0, lines.append) >= 1, lines
    thread.join()
    assert answers and answers[0] >= 1
