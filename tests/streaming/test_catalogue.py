"""The live catalogue's records, their bounds, and the items topic replayed into a store:
last writer wins, so a replay never brings back what a later change replaced."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from bench.services import Broker
from streaming.bus import Bus, MemoryBus, Message
from streaming.catalogue import MAX_COLUMNS, MAX_VALUES, ItemRecord, apply_records, check_features, follow_items
from streaming.events import EventError
from streaming.redis_store import RedisStore
from streaming.stores import MemoryStore, Store


def test_a_record_round_trips_and_a_take_down_carries_no_features() -> None:
    record = ItemRecord("new-1", {"genres": "Comedy|Drama", "year": 2026.0}, 100.0, False, 101.5, "editor")
    assert ItemRecord.decode(record.encode()) == record
    gone = ItemRecord.decode(ItemRecord("new-1", {"genres": "x"}, 100.0, True, 102.0).encode())
    assert gone.deleted and gone.features == {}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "item record"),
        (b"[1]", "item record"),
        (b'{"item_id": "a{b}"}', "item_id"),
        (b'{"item_id": "~om:x"}', "item_id"),
        (b'{"item_id": "a", "deleted": "yes"}', "deleted"),
        (b'{"item_id": "a", "ts": "soon"}', "ts"),
        (b'{"item_id": "a", "created_at": null}', "created_at"),
        (b'{"item_id": "a", "features": {"g": [1]}}', "features.g"),
    ],
)
def test_a_bad_record_names_its_field(raw: bytes, field: str) -> None:
    with pytest.raises(EventError, match=f"^{field}"):
        ItemRecord.decode(raw)


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({f"c{i}": "x" for i in range(MAX_COLUMNS + 1)}, "features:"),
        ({"g": "|".join(["x"] * (MAX_VALUES + 1))}, "features.g:"),
        ({"g": "x" * 1001}, "features.g:"),
        ({"g": float("nan")}, "features.g:"),
        ({"g": True}, "features.g:"),
        ({"a=b": "x"}, "features.a=b:"),
        ({"": "x"}, "features.:"),
        ({"colour": "red"}, "features.colour: unknown feature column"),
    ],
)
def test_features_are_bounded_and_columns_known(features: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as info:
        check_features(features, frozenset({"g", *(f"c{i}" for i in range(MAX_COLUMNS + 1))}))
    assert str(info.value).startswith(field)


def test_replaying_the_log_keeps_the_latest_change_of_each_item() -> None:
    store = MemoryStore()
    put = ItemRecord("a", {"g": "x"}, 1.0, False, 10.0).encode()
    down = ItemRecord("a", {}, 1.0, True, 20.0).encode()
    other = ItemRecord("b", {}, 1.0, False, 15.0).encode()
    # The log holds the older record first; after the take-down, a replay of the whole log
    # (a restart, a lost Redis) applies the put again: it must not bring the item back.
    assert apply_records(store, [put, other, down]) == (3, 0)
    seq = store.items_since(0, 10)[1]
    # The put is older than the take-down: it does not land; the others are already there.
    assert apply_records(store, [put, other, down, b"garbage"]) == (2, 1)
    assert store.items_since(0, 10)[1] == seq  # and the catalogue did not move
    assert ItemRecord.decode(store.get_item("a") or b"").deleted
    # Order within a replay does not matter either: the take-down is newer.
    fresh = MemoryStore()
    apply_records(fresh, [down, put])
    assert ItemRecord.decode(fresh.get_item("a") or b"").deleted


def _follow(bus: Bus, store: Store, topic: str) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=follow_items, args=(bus, store, topic, stop), daemon=True)
    thread.start()
    return stop, thread


def _wait(predicate: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]  # a zero-argument callable
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _publish(bus: Bus, topic: str, records: list[ItemRecord]) -> None:
    bus.producer().send_and_wait([Message(topic, r.item_id.encode(), r.encode()) for r in records], 5.0)


def test_the_follower_replays_the_topic_and_keeps_following_in_memory() -> None:
    bus, store = MemoryBus(), MemoryStore()
    bus.ensure_topics({"items": 2}, compacted=["items"])
    _publish(bus, "items", [ItemRecord("a", {}, 1.0, False, 1.0), ItemRecord("a", {}, 1.0, True, 2.0)])
    stop, thread = _follow(bus, store, "items")
    try:
        _wait(lambda: store.get_item("a") is not None and ItemRecord.decode(store.get_item("a") or b"").deleted)
        _publish(bus, "items", [ItemRecord("b", {"g": "x"}, 1.0, False, 3.0)])
        _wait(lambda: store.get_item("b") is not None)
    finally:
        stop.set()
        thread.join(timeout=5)


def test_a_lost_redis_gets_its_catalogue_back_from_the_topic(redis_url: str, broker: Broker) -> None:
    """On the real broker and Redis: the catalogue keys are wiped (a lost Redis), a new
    follower (a restarted consumer) replays the compacted topic, and the take-down holds."""
    import redis

    from streaming.kafka_bus import KafkaBus
    from streaming.redis_store import ITEMS_CHANGES_KEY, ITEMS_KEY, ITEMS_SEQ_KEY, ITEMS_TS_KEY

    topic, tag = f"items-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:6]
    bus = KafkaBus(broker.bootstrap, timeout_s=5.0)
    bus.ensure_topics({topic: 2}, compacted=[topic])
    store = RedisStore.from_url(redis_url, timeout_s=2.0)
    kept, gone = f"kept-{tag}", f"gone-{tag}"
    _publish(
        bus,
        topic,
        [
            ItemRecord(kept, {"g": "x"}, 1.0, False, 1.0),
            ItemRecord(gone, {"g": "y"}, 1.0, False, 1.0),
            ItemRecord(gone, {}, 1.0, True, 2.0),
        ],
    )
    for _ in range(2):  # the first follower fills the store; the second replays into a wiped one
        stop, thread = _follow(bus, store, topic)
        try:
            _wait(lambda: store.get_item(kept) is not None and store.get_item(gone) is not None, 60.0)
            assert ItemRecord.decode(store.get_item(gone) or b"").deleted
            assert not ItemRecord.decode(store.get_item(kept) or b"").deleted
        finally:
            stop.set()
            thread.join(timeout=10)
        redis.Redis.from_url(redis_url).delete(ITEMS_KEY, ITEMS_TS_KEY, ITEMS_CHANGES_KEY, ITEMS_SEQ_KEY)
