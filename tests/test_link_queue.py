"""The trap's outbound queue and the base's fragment store: persistence and policies."""

from __future__ import annotations

import pytest

from device.link import FragmentStore, OutboundStore, Priority, QueueFullError


def test_image_and_acks_survive_reopen(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite")
    item = queue.put(b"x" * 1000, Priority.ANIMAL, now=1.0)
    queue.start(item.row, 100)
    queue.record_acked(item.row, {0, 3, 4}, fcnt_down=17)
    queue.close()  # (or kill -9: every call above committed)
    again = OutboundStore(tmp_path / "q.sqlite")
    [back] = again.pending()
    assert (back.data, back.frag_size, back.acked) == (b"x" * 1000, 100, {0, 3, 4})
    assert again.last_fcnt_down() == 17
    with again._db:  # the file really is in WAL mode
        assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_changed_fragment_size_forgets_acks(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite")
    item = queue.put(b"x" * 1000)
    queue.start(item.row, 100)
    queue.record_acked(item.row, {0, 1}, fcnt_down=1)
    queue.start(item.row, 50)  # the radio's mtu changed
    assert queue.get(item.row).acked == frozenset()


def test_priority_then_age(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite")
    queue.put(b"t1", Priority.TIMELAPSE, now=1.0)
    queue.put(b"a1", Priority.ANIMAL, now=2.0)
    queue.put(b"o1", Priority.OTHER, now=0.5)
    queue.put(b"a0", Priority.ANIMAL, now=1.5)
    assert [i.data for i in queue.pending()] == [b"a0", b"a1", b"o1", b"t1"]
    assert queue.next_ready(now=10.0).data == b"a0"
    queue.defer(queue.next_ready(now=10.0).row, until=100.0)
    assert queue.next_ready(now=10.0).data == b"a1"  # a deferred image waits its turn
    assert queue.next_ready(now=100.0).data == b"a0"


def test_full_queue_drops_timelapse_before_animals(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite", max_bytes=3000, min_free_bytes=0)
    queue.put(b"t" * 1000, Priority.TIMELAPSE, now=1.0)
    queue.put(b"a" * 1000, Priority.ANIMAL, now=2.0)
    queue.put(b"T" * 1000, Priority.TIMELAPSE, now=3.0)
    queue.put(b"A" * 1000, Priority.ANIMAL, now=4.0)  # drops the oldest timelapse
    assert [i.data[:1] for i in queue.pending()] == [b"a", b"A", b"T"]
    queue.put(b"B" * 1500, Priority.ANIMAL, now=5.0)  # drops the other timelapse, then the
    assert [i.data[:1] for i in queue.pending()] == [b"A", b"B"]  # oldest animal
    with pytest.raises(QueueFullError):  # a timelapse never pushes out an animal
        queue.put(b"t" * 1000, Priority.TIMELAPSE, now=6.0)
    assert len(queue) == 2


def test_low_disk_space_refuses_when_nothing_can_go(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite", min_free_bytes=1 << 62)
    with pytest.raises(QueueFullError, match="free on disk"):
        queue.put(b"x")


def test_image_ids_wrap_and_skip_queued_ones(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite")
    with queue._tx():
        queue._set_meta("next_image_id", 65535)
    first = queue.put(b"a")
    second = queue.put(b"b")
    assert (first.image_id, second.image_id) == (65535, 0)
    with queue._tx():
        queue._set_meta("next_image_id", 65535)
    assert queue.put(b"c").image_id == 1  # 65535 and 0 are still queued


def test_store_keeps_fragments_and_finished_images(tmp_path) -> None:
    store = FragmentStore(tmp_path / "s.sqlite")
    r = store.add_fragment(3, 9, 1, 2, b"world", fcnt=4, rssi=-80, snr=5, now=1.0)
    assert r.held == {1} and r.completed is None
    store.close()
    store = FragmentStore(tmp_path / "s.sqlite")
    assert store.last_fcnt(3) == 4
    r = store.add_fragment(3, 9, 0, 2, b"hello ", fcnt=5, rssi=-90, snr=7, now=2.0)
    assert r.completed.data == b"hello world" and r.completed.rssi == -85.0
    assert [d.data for d in store.undelivered()] == [b"hello world"]
    store.confirm(3, 9)
    assert store.undelivered() == [] and store.is_complete(3, 9)
    assert store.add_fragment(3, 9, 0, 2, b"hello ", fcnt=6, rssi=-90, snr=7,
                              now=3.0).duplicate


def test_store_expires_abandoned_partials(tmp_path) -> None:
    store = FragmentStore(tmp_path / "s.sqlite")
    store.add_fragment(3, 1, 0, 3, b"a", fcnt=1, rssi=-80, snr=5, now=10.0)
    store.add_fragment(3, 2, 0, 3, b"b", fcnt=2, rssi=-80, snr=5, now=500.0)
    assert store.expire_partials(older_than=100.0) == 1
    assert store.held(3, 1) == (frozenset(), 0) and store.held(3, 2)[0] == {0}


def test_downlink_counters_never_repeat_across_restarts(tmp_path) -> None:
    store = FragmentStore(tmp_path / "s.sqlite")
    used = [store.next_fcnt_down(3) for _ in range(3)]
    store.close()
    store = FragmentStore(tmp_path / "s.sqlite")
    assert store.next_fcnt_down(3) > max(used)
    assert store.next_fcnt_down(4) == 0


def test_a_hopeless_put_drops_nothing(tmp_path) -> None:
    queue = OutboundStore(tmp_path / "q.sqlite", max_bytes=3000, min_free_bytes=0)
    queue.put(b"t" * 1000, Priority.TIMELAPSE)
    queue.put(b"a" * 1500, Priority.ANIMAL)
    with pytest.raises(QueueFullError):  # would need the animal gone too: keep both
        queue.put(b"T" * 2000, Priority.TIMELAPSE)
    with pytest.raises(QueueFullError, match="exceeds"):
        queue.put(b"A" * 4000, Priority.ANIMAL)
    assert len(queue) == 2


def test_a_source_is_remembered_with_its_image_after_delivery_and_reopen(tmp_path) -> None:
    from device.link.queue import REMEMBER_SOURCES

    queue = OutboundStore(tmp_path / "q.sqlite")
    item = queue.put(b"x" * 100, source="file:/card/a.jpg:100:1")
    assert queue.queued_as("file:/card/a.jpg:100:1") == item.image_id
    assert queue.queued_as("file:/card/b.jpg:100:1") is None
    queue.complete(item.row)  # delivered: the image goes, its source key stays
    queue.close()  # (or kill -9 right after put: the key was in put's transaction)
    again = OutboundStore(tmp_path / "q.sqlite")
    assert again.queued_as("file:/card/a.jpg:100:1") == item.image_id
    for i in range(REMEMBER_SOURCES):
        again.complete(again.put(b"y", source=f"file:{i}").row)
    assert again.queued_as("file:/card/a.jpg:100:1") is None  # only the newest are kept
    assert again.queued_as(f"file:{REMEMBER_SOURCES - 1}") is not None
