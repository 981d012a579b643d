"""The LoRa link layer: everything between an encoded image and the radio.

For the trap and base-station services, the whole API is::

    from device.link import (DutyCycle, FragmentStore, OutboundStore, Priority, Receiver,
                             Sender, load_keys)
    from device.radio.clock import SystemClock

    # trap
    clock = SystemClock()
    queue = OutboundStore(storage_dir / "outbound.sqlite")           # survives kill -9
    keys = load_keys(config.keys_file)                                 # refuses mode != 0600
    dc = DutyCycle(config.radio.region, config.radio.frequency_mhz, clock)
    sender = Sender(radio, queue, config.trap_id, keys[config.trap_id], clock, dc,
                    encrypt=False)
    queue.put(container_bytes, Priority.ANIMAL, now=clock.now())      # commit first
    result = sender.pump()      # one ARQ round; result.wait = seconds until useful again
                                # (None = queue empty); never sleeps for the duty cycle
    sender.send_pending()       # or: loop pump() + clock.sleep(wait) until the queue is empty

    # base station
    receiver = Receiver(radio, FragmentStore(storage_dir / "base.sqlite"), keys, clock, dc)
    for image in receiver.serve():          # or receiver.poll(timeout) -> list
        image.trap_id, image.image_id, image.data, image.rssi, image.snr
        # saved by the time you iterate again (serve confirms it then; with poll, call
        # receiver.confirm(trap_id, image_id), from any thread); after a crash unconfirmed
        # images are handed out again, each image is stored exactly once

SQLite connections belong to one thread: open one `OutboundStore` per thread or process (e.g.
one in the capture loop for `put`, one in the sending loop); they share the file safely.

`radio` is any `device.radio.base.Radio` (its `modulation` plans the airtime; `modulation=`
overrides it). For a simulated
radio see device/radio/sim.py (`SimChannel` in one process, `UdpRadio` across two).
Many traps, one base, one channel: the sender listens before it talks (radios with
`channel_active()`), backs off with seeded jitter and pauses between the pictures of a backlog;
the receiver answers in arrival order, only while the trap still listens, within its own duty
cycle (`receiver.duty_report()`, `receiver.trap_stats`). See sender.py and receiver.py.
`sender.stats` and `receiver.stats` are Counters (frames, acks, forged, replayed, corrupt...).

Layers (STYLE.md 7): frames.py (bytes on air, CRC, frame sizes) / auth.py (sealing, MIC,
counter window, keys) / sender.py and receiver.py (the ARQ: what to send when) / queue.py and
store.py (SQLite persistence) / dutycycle.py (legal airtime).
Wire format and behaviour: docs/link.md.
"""

from device.link.auth import AuthError, FrameAuth, check_private, load_keys, write_keys
from device.link.dutycycle import REGIONS, DutyCycle
from device.link.frames import FrameError
from device.link.queue import OutboundStore, Priority, QueueFullError
from device.link.receiver import Receiver
from device.link.sender import RoundResult, Sender
from device.link.store import DeliveredImage, FragmentStore

__all__ = [
    "REGIONS",
    "AuthError",
    "DeliveredImage",
    "DutyCycle",
    "FragmentStore",
    "FrameAuth",
    "FrameError",
    "OutboundStore",
    "Priority",
    "QueueFullError",
    "Receiver",
    "RoundResult",
    "Sender",
    "check_private",
    "load_keys",
    "write_keys",
]
