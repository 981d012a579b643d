"""The link layer runs unchanged on the SX1262 and E22 drivers (here on emulated hardware)."""

from __future__ import annotations

import threading

import pytest
from emulators.e22 import E22Air, EmulatedE22
from emulators.sx1262 import emulated_pair
from gpiozero.pins.mock import MockFactory

from device.link import FragmentStore, OutboundStore, Priority, Receiver, Sender
from device.radio.e22 import E22, E22Config


def sx1262_pair():
    return emulated_pair()


def e22_pair():
    air = E22Air()
    radios = []
    for _ in range(2):
        factory = MockFactory()
        module = EmulatedE22(factory, air)
        radios.append(E22(E22Config(air_rate=62500), module.port, pin_factory=factory,
                          mode_delay=0.005))
    return radios, air


@pytest.mark.parametrize("pair", [sx1262_pair, e22_pair],
                         ids=["sx1262", "e22"])
def test_an_image_crosses_the_link(pair, tmp_path):
    (trap, base), air = pair()
    image = bytes(range(256)) * 8  # 2 KiB
    queue = OutboundStore(tmp_path / "out.sqlite")
    queue.put(image, Priority.ANIMAL, now=0.0)
    sender = Sender(trap, queue, 7, None, ack_timeout=0.5)
    got = []
    stop = threading.Event()

    def serve():  # SQLite objects stay in the thread that made them
        receiver = Receiver(base, FragmentStore(tmp_path / "base.sqlite"), None,
                            require_auth=False)
        while not stop.is_set() and not got:
            got.extend(receiver.poll(0.2))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for _ in range(40):
            if got:
                break
            sender.pump()
    finally:
        stop.set()
        thread.join()
    assert got and got[0].data == image and got[0].trap_id == 7
    trap.close()
    base.close()
    air.close()
