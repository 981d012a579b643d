"""Frame-counter resynchronisation (device/link/auth.py `check_fcnt`): a jump beyond
MAX_FCNT_GAP is accepted only when a second authentic frame confirms it."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace

import pytest

from device.link import FragmentStore, OutboundStore, Receiver, Sender, frames
from device.link.auth import MAX_FCNT_GAP, RESYNC_WRAPS, UP, FcntCheck, FrameAuth, check_fcnt
from device.link.frames import DataFrame
from device.radio.base import Reception
from device.radio.clock import VirtualClock
from device.radio.sim import SimChannel

KEY = bytes(range(16))
WRAP = 0x10000


def _frame(fcnt: int, index: int = 0, count: int = 2, image: int = 1, key: bytes = KEY) -> Reception:
    """A data frame as trap 7 sends it: the MIC covers the full counter, 16 bits travel."""
    frame = DataFrame(7, image, index, count, f"part{index}".encode(), fcnt=fcnt & 0xFFFF)
    mic = FrameAuth(key).mic(UP, 7, fcnt, frames.signed_part(frame))
    return Reception(frames.pack(replace(frame, mic=mic)), -90.0, 7.0)


@pytest.fixture
def receiver(tmp_path):
    clock = VirtualClock()
    return Receiver(SimChannel(clock).radio("base"), FragmentStore(tmp_path / "base.sqlite"),
                    {7: KEY}, clock)


def test_rule_on_counters() -> None:
    exact = lambda n: lambda c: c == n  # noqa: E731 (a MIC that verifies at one counter)
    assert check_fcnt(10, 11, exact(11)) == FcntCheck("ok", 11)
    assert check_fcnt(10, 10 + MAX_FCNT_GAP, exact(10 + MAX_FCNT_GAP)).verdict == "ok"
    # one step beyond the gap, or whole wraps ahead: held until a second frame confirms
    far = 10 + MAX_FCNT_GAP + 1
    assert check_fcnt(10, far & 0xFFFF, exact(far)) == FcntCheck("resync", far)
    ahead = 4 * WRAP + 11
    assert check_fcnt(10, 11, exact(ahead)) == FcntCheck("resync", ahead)
    assert check_fcnt(10, 12, exact(ahead + 1), pending=ahead) == FcntCheck("ok", ahead + 1)
    # the confirming frame must lie within the gap above the pending one
    assert check_fcnt(10, 11, exact(ahead + WRAP), pending=ahead).verdict == "resync"
    # a pending counter the trap has since passed is ignored
    passed = ahead + 6
    assert check_fcnt(ahead + 5, passed & 0xFFFF, exact(passed), pending=ahead) == FcntCheck(
        "ok", passed)
    assert check_fcnt(10, 9, exact(9)).verdict == "replayed"
    assert check_fcnt(10, 11, lambda c: False).verdict == "forged"
    # the search is bounded: a trap further ahead than RESYNC_WRAPS cannot resync
    beyond = 11 + (RESYNC_WRAPS + 1) * WRAP
    assert check_fcnt(10, 11, exact(beyond)).verdict == "forged"
    # a base that lost its state (no counter) resyncs to any trap counter the same way
    assert check_fcnt(None, 3, exact(3)) == FcntCheck("ok", 3)
    assert check_fcnt(None, 3, exact(5 * WRAP + 3)).verdict == "resync"


def test_trap_four_wraps_ahead_is_resynchronised(receiver) -> None:
    receiver.handle(_frame(5, image=9, count=1))
    assert receiver.store.last_fcnt(7) == 5
    ahead = 4 * WRAP + 100  # the base missed four wraps (a week of a restart loop, say)
    assert receiver.handle(_frame(ahead, 0)) == []  # held, not refused as forged
    assert receiver.stats["resync"] == 1 and receiver.stats["forged"] == 0
    assert receiver.store.last_fcnt(7) == 5  # one frame alone never moves the counter
    receiver.handle(_frame(ahead + 1, 1))  # the next frame confirms the jump
    assert receiver.store.last_fcnt(7) == ahead + 1
    receiver.handle(_frame(ahead + 2, 0))  # the ARQ resends the fragment the resync cost
    assert receiver.store.is_complete(7, 1)
    # after the resync, replays of old and of the held frame are refused
    assert receiver.handle(_frame(5, image=9, count=1)) == []
    assert receiver.handle(_frame(ahead, 0)) == []
    assert receiver.store.last_fcnt(7) == ahead + 2


def test_a_lone_far_frame_does_not_lock_the_trap_out(receiver) -> None:
    """A frame held for resync (a lucky forgery, say) leaves the real trap's frames accepted."""
    receiver.handle(_frame(5, 0))
    receiver.handle(_frame(3 * WRAP, 0))
    assert receiver.stats["resync"] == 1
    receiver.handle(_frame(6, 1))
    assert receiver.store.last_fcnt(7) == 6 and receiver.store.is_complete(7, 1)


def test_base_without_state_accepts_a_long_running_trap(receiver) -> None:
    counter = 300_000  # 4.6 wraps: a trap that ran for months, a base reinstalled
    receiver.handle(_frame(counter, 0))
    receiver.handle(_frame(counter + 1, 1))
    receiver.handle(_frame(counter + 2, 0))
    assert receiver.store.is_complete(7, 1)


def _set_meta(path, key: str, value: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def test_sender_and_receiver_deliver_across_far_counter_jumps(tmp_path) -> None:
    """End to end: the trap's counter is 5 wraps ahead of the base, and the base's ack counter
    4 wraps ahead of what the trap last accepted; the image still arrives, once."""
    clock = VirtualClock()
    channel = SimChannel(clock)
    store = FragmentStore(tmp_path / "base.sqlite")
    store.accept_fcnt(7, 40)
    store.close()
    with sqlite3.connect(tmp_path / "base.sqlite") as db:
        db.execute("UPDATE counters SET fcnt_down=? WHERE trap_id=7", (4 * WRAP + 9,))
    store = FragmentStore(tmp_path / "base.sqlite")
    base = channel.radio("base")
    receiver = Receiver(base, store, {7: KEY}, clock)
    got = []
    base.on_frame = lambda: got.extend(receiver.poll(0))
    OutboundStore(tmp_path / "trap.sqlite").close()  # creates the schema
    _set_meta(tmp_path / "trap.sqlite", "fcnt_up", 5 * WRAP + 40)
    _set_meta(tmp_path / "trap.sqlite", "fcnt_down", 3)
    queue = OutboundStore(tmp_path / "trap.sqlite")
    sender = Sender(channel.radio("trap"), queue, 7, KEY, clock, seed=1)
    data = os.urandom(2000)
    queue.put(data, now=clock.now())
    assert sender.send_pending(deadline=clock.now() + 3600) == 1
    assert [g.data for g in got] == [data]
    assert receiver.stats["resync"] == 1 and receiver.stats["forged"] == 0
    assert sender.stats["resync"] == 1 and sender.stats["forged"] == 0
    assert store.last_fcnt(7) > 5 * WRAP


def test_auth_trials_figures(tmp_path) -> None:
    """The figures of `python -m tools.auth_trials` (docs/reliability.md), on a few frames."""
    from tools import auth_trials

    rows = auth_trials.attacks(20, tmp_path)
    assert rows.pop("genuine") == {"sent": 20, "accepted": 20}
    assert all(row["accepted"] == 0 for row in rows.values())
    assert rows["replayed"]["replayed"] == 20 and rows["foreign trap"]["unknown_trap"] == 20
    needed = dict(auth_trials.resyncs(tmp_path))
    assert needed["MAX_FCNT_GAP"] == 1 and needed["4 wraps"] == 2
    assert needed[f"{RESYNC_WRAPS} wraps"] == 2 and needed[f"{RESYNC_WRAPS + 1} wraps + 1"] is None
