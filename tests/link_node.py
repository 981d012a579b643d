"""A trap or base-station process on the loopback-UDP simulated radio (for kill -9 tests).

    python tests/link_node.py send DB LISTEN PEER IMAGE...   # queue the images once, send all
    python tests/link_node.py receive DB LISTEN PEER OUTDIR  # save each image as OUTDIR/T_I.bin

Time runs SPEEDUP times faster than real time; both ends use the same key and 10% loss.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.link import FragmentStore, OutboundStore, Receiver, Sender  # noqa: E402
from device.radio.airtime import Modulation  # noqa: E402
from device.radio.clock import ScaledClock  # noqa: E402
from device.radio.sim import Bernoulli, UdpRadio  # noqa: E402

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
SPEEDUP = 10.0
TRAP = 5


def main(argv: list[str]) -> int:
    role, db, listen, peer = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    clock = ScaledClock(SPEEDUP)
    seed = int.from_bytes(os.urandom(4), "big")  # each restart loses different frames
    radio = UdpRadio(listen, peer, modulation=Modulation(sf=7), loss=Bernoulli(0.1, seed),
                     clock=clock)
    if role == "send":
        fresh = not db.exists()
        queue = OutboundStore(db)
        if fresh:
            for path in argv[4:]:
                queue.put(Path(path).read_bytes(), now=clock.now())
        sender = Sender(radio, queue, TRAP, KEY, clock, encrypt=True, ack_timeout=3.0,
                        backoff=1.0, max_backoff=4.0, retry_after=5.0)
        sender.send_pending()
        print(json.dumps(dict(sender.stats)), flush=True)
        return 0
    out = Path(argv[4])
    receiver = Receiver(radio, FragmentStore(db), {TRAP: KEY}, clock)
    print("ready", flush=True)
    for image in receiver.serve(timeout=0.5):
        final = out / f"{image.trap_id}_{image.image_id}.bin"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(image.data)
        os.replace(tmp, final)  # idempotent: a re-delivery after a crash rewrites the same file
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
