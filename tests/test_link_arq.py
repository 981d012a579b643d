"""ARQ over the simulated channel, all on the virtual clock."""

from __future__ import annotations

import os
import random

import pytest

from device.link import FragmentStore, OutboundStore, Priority, Receiver, Sender, frames
from device.link.frames import DataFrame
from device.radio.base import Reception
from device.radio.clock import VirtualClock
from device.radio.sim import GilbertElliott, SimChannel, loss_model

KEY = bytes(range(16))


class Link:
    """One base and several traps on one simulated channel."""

    def __init__(self, tmp_path, traps=(7,), loss=0.0, burst=False, seed=0, mtu=255, **kw):
        self.clock = VirtualClock()
        self.channel = SimChannel(self.clock, seed=seed)
        self.base = self.channel.radio("base", mtu=mtu,
                                       loss=loss_model(loss, burst, seed=seed + 1000))
        self.store = FragmentStore(tmp_path / "base.sqlite")
        self.receiver = Receiver(self.base, self.store, {t: KEY for t in traps}, self.clock)
        self.got = []
        self.base.on_frame = lambda: self.got.extend(self.receiver.poll(0))
        self.senders, self.queues, self.radios = {}, {}, {}
        for t in traps:
            radio = self.channel.radio(f"trap{t}", mtu=mtu,
                                       loss=loss_model(loss, burst, seed=seed + t))
            queue = OutboundStore(tmp_path / f"trap{t}.sqlite")
            self.radios[t], self.queues[t] = radio, queue
            self.senders[t] = Sender(radio, queue, t, KEY, self.clock, seed=seed + t, **kw)

    def put(self, trap: int, data: bytes, priority=Priority.ANIMAL):
        return self.queues[trap].put(data, priority, now=self.clock.now())

    def airtime(self) -> float:
        return self.base.airtime + sum(r.airtime for r in self.radios.values())


@pytest.mark.parametrize(("loss", "burst"), [(0.0, False), (0.1, False), (0.3, False),
                                             (0.2, True), (0.3, True)])
def test_images_arrive_identical_under_loss(tmp_path, loss: float, burst: bool) -> None:
    link = Link(tmp_path, loss=loss, burst=burst, seed=3)
    images = [os.urandom(n) for n in (3000, 10_000, 1)]
    for data in images:
        link.put(7, data)
    assert link.senders[7].send_pending() == 3
    # each exactly once, byte-identical (a deferred image may come after a later one)
    assert sorted(g.data for g in link.got) == sorted(images)
    assert len(link.queues[7]) == 0
    assert all(link.store.is_complete(7, g.image_id) for g in link.got)


def test_lossless_sends_each_fragment_once(tmp_path) -> None:
    link = Link(tmp_path)
    link.put(7, os.urandom(5000))
    link.senders[7].send_pending()
    count = -(-5000 // link.senders[7].fragment_size)
    assert link.senders[7].stats["frames"] == count
    assert link.receiver.stats["duplicates"] == 0


def test_only_missing_fragments_are_resent(tmp_path) -> None:
    link = Link(tmp_path, loss=0.3, seed=11)
    link.put(7, os.urandom(10_000))
    link.senders[7].send_pending()
    count = -(-10_000 // link.senders[7].fragment_size)
    received = link.receiver.stats["fragments"]
    # selective acks, and polls after lost acks: no fragment the base holds is sent again
    assert link.receiver.stats["duplicates"] == 0
    assert received == count
    assert link.senders[7].stats["polls"] == link.senders[7].stats["ack_timeouts"] > 0


def _receiver(tmp_path, keys=None):
    clock = VirtualClock()
    radio = SimChannel(clock).radio("base")
    return Receiver(radio, FragmentStore(tmp_path / "r.sqlite"), keys, clock,
                    require_auth=keys is not None)


def _fragments(data: bytes, size: int, trap=1, image=5):
    count = -(-len(data) // size)
    return [frames.pack(DataFrame(trap, image, i, count, data[i * size:(i + 1) * size],
                                  fcnt=i + 1)) for i in range(count)]


def test_reassembly_in_any_order_with_duplicates(tmp_path) -> None:
    receiver = _receiver(tmp_path)
    data = os.urandom(3000)
    raws = _fragments(data, 100)
    order = raws + raws[::3]  # a third of them twice
    random.Random(1).shuffle(order)
    done = []
    seen = set()
    for raw in order:
        done += receiver.handle(Reception(raw, -90.0, 5.0))
        seen.add(raw)
    assert [d.data for d in done] == [data]
    # the duplicates before completion were dropped, those after it were recognised
    assert receiver.stats["duplicates"] == len(order) - len(raws)
    assert receiver.stats["images"] == 1


def test_late_duplicate_after_completion_is_not_a_second_image(tmp_path) -> None:
    receiver = _receiver(tmp_path)
    data = os.urandom(500)
    raws = _fragments(data, 100)
    for raw in raws:
        receiver.handle(Reception(raw, -90.0, 5.0))
    again = frames.pack(DataFrame(1, 5, 2, len(raws), data[200:300], fcnt=99))
    assert receiver.handle(Reception(again, -90.0, 5.0)) == []
    assert receiver.stats["images"] == 1


def test_several_traps_interleaved(tmp_path) -> None:
    link = Link(tmp_path, traps=(1, 2, 3), loss=0.1, seed=5, max_burst=4, min_burst=1)
    sent = {t: [os.urandom(2500 + 100 * t) for _ in range(2)] for t in (1, 2, 3)}
    for t, images in sent.items():
        for data in images:
            link.put(t, data)
    for _ in range(10_000):  # round-robin: the base sees the traps' bursts interleaved
        results = [s.pump() for s in link.senders.values()]
        if all(r.wait is None for r in results):
            break
        link.clock.sleep(min(r.wait for r in results if r.wait is not None))
    got = {(g.trap_id, g.data) for g in link.got}
    assert got == {(t, d) for t, images in sent.items() for d in images}
    assert len(link.got) == 6
    assert all(-100 < g.rssi < -85 for g in link.got)


def test_gives_up_for_the_window_and_keeps_the_image(tmp_path) -> None:
    link = Link(tmp_path, max_idle_rounds=3, retry_after=600.0)
    link.base.close()  # nobody answers
    item = link.put(7, os.urandom(1000))
    results = []
    for _ in range(10):
        result = link.senders[7].pump()
        results.append(result)
        if result.deferred:
            break
        link.clock.sleep(result.wait)
    assert results[-1].deferred and len(results) == 3
    assert [r.sent for r in results] == [results[0].sent, 1, 1]  # then polls only
    assert link.senders[7].stats["polls"] == 2
    queued = link.queues[7].pending()
    assert [q.image_id for q in queued] == [item.image_id] and queued[0].attempts == 1
    assert queued[0].next_try >= link.clock.now() + 0.8 * 600
    # backoff grows with jitter between rounds
    waits = [r.wait for r in results[:-1]]
    assert 1.0 <= waits[0] <= 3.0 and 2.0 <= waits[1] <= 6.0
    # nothing to do until the retry time; then it goes again
    assert link.senders[7].pump().wait > 400


def test_animals_go_before_timelapse(tmp_path) -> None:
    link = Link(tmp_path)
    link.put(7, b"timelapse" * 50, Priority.TIMELAPSE)
    link.put(7, b"animal" * 50, Priority.ANIMAL)
    link.senders[7].send_pending()
    assert [g.data[:6] for g in link.got] == [b"animal", b"timela"]


def test_mtu_sets_fragment_size(tmp_path) -> None:
    link = Link(tmp_path, mtu=32)  # an E22 UART sub-packet
    assert link.senders[7].fragment_size == 32 - 15
    data = os.urandom(2000)
    link.put(7, data)
    link.senders[7].send_pending()
    assert link.got[0].data == data


def test_burst_model_has_requested_mean_and_bursts() -> None:
    model = GilbertElliott.from_mean(0.2, burst=5, seed=1)
    outcomes = [model.lost() for _ in range(50_000)]
    assert sum(outcomes) / len(outcomes) == pytest.approx(0.2, abs=0.02)
    runs, run = [], 0
    for lost in outcomes:
        if lost:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert sum(runs) / len(runs) == pytest.approx(5, rel=0.15)


def test_unconfirmed_images_are_handed_out_again_after_a_crash(tmp_path) -> None:
    receiver = _receiver(tmp_path)
    data = os.urandom(300)
    done = []
    for raw in _fragments(data, 100):
        receiver.radio.inbox.append(Reception(raw, -90.0, 5.0))
        done += receiver.poll(0)
    assert [d.data for d in done] == [data]
    receiver.store.close()  # the base dies before polling again (the image is unconfirmed)
    again = _receiver(tmp_path)
    (image,) = again.poll(0)
    assert image.data == data
    again.store.close()  # dies again before confirming: handed out once more
    again = _receiver(tmp_path)
    assert [d.data for d in again.poll(0)] == [data]
    again.confirm(image.trap_id, image.image_id)
    assert again.poll(0) == []
    again.store.close()
    assert _receiver(tmp_path).poll(0) == []


def test_serve_confirms_an_image_when_the_loop_asks_for_the_next(tmp_path) -> None:
    receiver = _receiver(tmp_path)
    data = os.urandom(300)
    for raw in _fragments(data, 100):
        receiver.radio.inbox.append(Reception(raw, -90.0, 5.0))
    images = receiver.serve(timeout=0)
    assert next(images).data == data
    images.close()  # the caller died while saving it: not confirmed
    receiver.store.close()
    again = _receiver(tmp_path)
    stopping = []
    served = again.serve(stop=lambda: bool(stopping), timeout=0)
    assert next(served).data == data
    stopping.append(True)
    assert list(served) == []  # asking for the next one confirmed it
    again.store.close()
    assert _receiver(tmp_path).poll(0) == []


def test_a_confirmation_from_another_thread_is_written_by_the_polling_thread(tmp_path) -> None:
    import threading

    receiver = _receiver(tmp_path)
    data = os.urandom(100)
    receiver.radio.inbox.append(Reception(_fragments(data, 100)[0], -90.0, 5.0))
    (image,) = receiver.poll(0)
    worker = threading.Thread(target=receiver.confirm, args=(image.trap_id, image.image_id))
    worker.start()
    worker.join()
    assert [d.image_id for d in receiver.store.undelivered()] == [image.image_id]  # queued
    receiver.poll(0)
    assert receiver.store.undelivered() == []
