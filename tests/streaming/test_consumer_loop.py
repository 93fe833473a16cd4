"""The consumer loop end to end: embedded bus + store, and a real broker + a real Redis.

Expected statistics come from a plain reference computation, not from the code under test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from bench.services import Broker, RedisCluster, ServiceUnavailable
from streaming.bus import Bus, MemoryBus, Message
from streaming.consumer import FeedbackConsumer
from streaming.events import FeedbackEvent, RequestContext
from streaming.kafka_bus import KafkaBus
from streaming.redis_store import RedisStore
from streaming.stores import MemoryStore, Store, StoreUnavailable
from tests.conftest import unavailable

COORDS = np.arange(6)


@dataclass
class Infra:
    bus: Bus
    store: Store
    topic: str
    dlq: str
    group: str
    kind: str
    version: str

    def consumer(self, **kwargs: object) -> FeedbackConsumer:
        return FeedbackConsumer(
            self.bus,
            self.store,
            group=self.group,
            feedback_topic=self.topic,
            dead_letter_topic=self.dlq,
            **kwargs,  # type: ignore[arg-type]  # test pass-through
        )


@pytest.fixture(params=["memory", "real", "cluster"])
def infra(request: pytest.FixtureRequest) -> Infra:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"feedback-{suffix}", f"dlq-{suffix}", f"group-{suffix}"
    if request.param == "memory":
        bus: Bus = MemoryBus()
        store: Store = MemoryStore()
    else:
        broker: Broker = request.getfixturevalue("broker")
        bus = KafkaBus(broker.bootstrap)
        if request.param == "real":
            store = RedisStore.from_url(request.getfixturevalue("redis_url"), timeout_s=2.0)
        else:
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            store = RedisStore.from_url(cluster.url, timeout_s=2.0, cluster=True, wait_replicas=1)
    bus.ensure_topics({topic: 4, dlq: 1})
    return Infra(bus, store, topic, dlq, group, str(request.param), f"v-{suffix}")


def scenario(version: str, n_requests: int = 30, seed: int = 0) -> tuple[list[RequestContext], list[FeedbackEvent]]:
    rng = np.random.default_rng(seed)
    contexts, events = [], []
    for r in range(n_requests):
        rid = f"req-{seed}-{r}"
        idx = sorted(rng.choice(6, 2, replace=False).tolist())
        w = rng.dirichlet([1, 1]).round(3).tolist()
        items = {f"item-{j}": (round(float(rng.random()) * 0.3, 3), False) for j in rng.choice(12, 3, replace=False)}
        contexts.append(RequestContext(rid, "home", version, idx, w, items, 0.0))
        for n, item in enumerate(items):
            events.append(FeedbackEvent(f"{rid}-{n}-i", rid, item, "impression", 0.0, time.time()))
            if rng.random() < 0.4:
                events.append(FeedbackEvent(f"{rid}-{n}-c", rid, item, "click", 1.0, time.time()))
                if rng.random() < 0.5:  # a double click: must count once
                    events.append(FeedbackEvent(f"{rid}-{n}-c2", rid, item, "click", 1.0, time.time()))
    events.append(FeedbackEvent("orphan", "req-unknown", "item-1", "click", 1.0, time.time()))
    return contexts, events


def reference(contexts: list[RequestContext], events: list[FeedbackEvent]) -> dict[str, dict[int, list[float]]]:
    by_id = {c.request_id: c for c in contexts}
    seen: set[tuple[str, str, str]] = set()
    stats: dict[str, dict[int, list[float]]] = {}
    for e in events:
        ctx = by_id.get(e.request_id)
        if ctx is None:
            continue
        kinds = ["impression"] if e.type == "impression" else ["impression", e.type]
        for kind in kinds:
            if (e.request_id, e.item_id, kind) in seen:
                continue
            seen.add((e.request_id, e.item_id, kind))
            p = ctx.items[e.item_id][0]
            for f, w in zip(ctx.indices, ctx.weights, strict=True):
                cell = stats.setdefault(e.item_id, {}).setdefault(f, [0.0, 0.0])
                if kind == "impression":
                    cell[0] += w * w
                    cell[1] -= w * p
                else:
                    cell[1] += w
    return stats


def assert_matches(store: Store, version: str, expected: dict[str, dict[int, list[float]]]) -> None:
    items = sorted(expected)
    w2, b = store.gather(version, items, COORDS)
    for i, item in enumerate(items):
        for f in COORDS.tolist():
            want = expected[item].get(f, [0.0, 0.0])
            assert w2[i, f] == pytest.approx(want[0], abs=1e-9), (item, f)
            assert b[i, f] == pytest.approx(want[1], abs=1e-9), (item, f)


def publish(infra: Infra, contexts: list[RequestContext], events: list[FeedbackEvent]) -> None:
    for ctx in contexts:
        infra.store.put_context(ctx, ttl_s=600)
    producer = infra.bus.producer()
    try:
        producer.send_and_wait([Message(infra.topic, e.item_id.encode(), e.encode()) for e in events], 10.0)
    finally:
        producer.close()


def drain(consumers: list[FeedbackConsumer], total: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(c.stats.events for c in consumers) < total:
        assert time.monotonic() < deadline, f"consumed {sum(c.stats.events for c in consumers)} of {total}"
        for c in consumers:
            c.run_once()


def test_every_event_is_applied_once(infra: Infra) -> None:
    contexts, events = scenario(infra.version)
    publish(infra, contexts, events)
    consumer = infra.consumer()
    try:
        drain([consumer], len(events))
    finally:
        consumer.close()
    assert_matches(infra.store, infra.version, reference(contexts, events))
    assert consumer.stats.counts["dead_unknown_request"] == 1
    assert consumer.stats.counts["duplicate"] >= 1


class Crash(Exception):
    pass


def _run_until_crash(consumer: FeedbackConsumer) -> None:
    for _ in range(200):
        consumer.run_once()


def test_crash_between_store_write_and_commit_changes_nothing_twice(infra: Infra) -> None:
    contexts, events = scenario(infra.version, seed=1)
    publish(infra, contexts, events)
    first = infra.consumer()

    def crash(offsets: object) -> None:
        raise Crash

    first._consumer.commit = crash  # type: ignore[method-assign]  # fault injection: die before the commit
    with pytest.raises(Crash):
        _run_until_crash(first)
    first.close()
    assert first.stats.events == 0  # nothing committed

    second = infra.consumer()
    try:
        drain([second], len(events))
    finally:
        second.close()
    assert_matches(infra.store, infra.version, reference(contexts, events))


def test_duplicate_delivery_of_the_same_events_changes_nothing(infra: Infra) -> None:
    contexts, events = scenario(infra.version, seed=2)
    publish(infra, contexts, events)
    publish(infra, [], events)  # a producer retry: every event twice
    consumer = infra.consumer()
    try:
        drain([consumer], 2 * len(events))
    finally:
        consumer.close()
    assert_matches(infra.store, infra.version, reference(contexts, events))


def test_two_members_split_partitions_and_one_takes_over(infra: Infra) -> None:
    contexts, events = scenario(infra.version, n_requests=60, seed=3)
    half = len(events) // 2
    for ctx in contexts:
        infra.store.put_context(ctx, ttl_s=600)
    a, b = infra.consumer(), infra.consumer()
    stop, b_stopped = threading.Event(), threading.Event()
    threads = [threading.Thread(target=c.run, args=(e,), daemon=True) for c, e in ((a, stop), (b, b_stopped))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not (a.assignment() and b.assignment()):
        assert time.monotonic() < deadline, "both members should get partitions"
        time.sleep(0.1)
    assert not (a.assignment() & b.assignment())
    assert len(a.assignment() | b.assignment()) == 4
    producer = infra.bus.producer()
    producer.send_and_wait([Message(infra.topic, e.item_id.encode(), e.encode()) for e in events[:half]], 10.0)
    while a.stats.events + b.stats.events < half:
        assert time.monotonic() < deadline + 30
        time.sleep(0.05)
    # Stop b as a stopped process would (it leaves the group); a must take over its partitions
    # and apply the rest exactly once.
    b_stopped.set()
    threads[1].join(timeout=20)
    producer.send_and_wait([Message(infra.topic, e.item_id.encode(), e.encode()) for e in events[half:]], 10.0)
    expected = reference(contexts, events)
    deadline = time.monotonic() + 60
    while not _matches(infra.store, infra.version, expected):
        assert time.monotonic() < deadline, "the remaining member should apply every event"
        time.sleep(0.2)
    assert len(a.assignment()) == 4
    stop.set()
    threads[0].join(timeout=20)
    producer.close()
    assert_matches(infra.store, infra.version, expected)


def _matches(store: Store, version: str, expected: dict[str, dict[int, list[float]]]) -> bool:
    try:
        assert_matches(store, version, expected)
    except AssertionError:
        return False
    return True


def test_an_item_clicked_across_clusters_becomes_trending(infra: Infra) -> None:
    """The pool coordinate (here 6) of pooled contexts ranks items against their priors: the
    one clicked far above its prior leads, the ones shown and ignored are not listed, and
    contexts without pooling (``pool`` -1) leave the list alone."""
    pool = 6
    contexts, events = [], []
    for r in range(40):
        rid = f"trend-{r}"
        cluster = r % 3  # spread over clusters: only the pool sees all of it
        pooled = r < 30
        items = {"hit": (0.02, False), "dud": (0.3, False), "plain": (0.05, False)}
        contexts.append(
            RequestContext(
                rid, "home", infra.version, [cluster, pool] if pooled else [cluster], [1.0, 1.0] if pooled else [1.0],
                items, 0.0, pool=pool if pooled else -1,
            )
        )  # fmt: skip
        for item in items:
            events.append(FeedbackEvent(f"{rid}-{item}-i", rid, item, "impression", 0.0, time.time()))
        if r % 2 == 0:
            events.append(FeedbackEvent(f"{rid}-hit-c", rid, "hit", "click", 1.0, time.time()))
        if r == 39:  # unpooled: must not make "plain" trending
            events.append(FeedbackEvent(f"{rid}-plain-c", rid, "plain", "click", 1.0, time.time()))
    publish(infra, contexts, events)
    consumer = infra.consumer()
    try:
        drain([consumer], len(events))
    finally:
        consumer.close()
    assert infra.store.trending(infra.version, 10) == ["hit"]
    # The score is the pool coordinate's residual under the trending ridge, read back whole.
    n0, b0 = infra.store.gather(infra.version, ["hit"], np.array([pool]))
    assert n0[0, 0] == pytest.approx(30.0) and b0[0, 0] == pytest.approx(15 - 30 * 0.02)


def test_a_master_killed_mid_run_loses_no_event_and_counts_none_twice(broker: Broker) -> None:
    """Its own cluster (a killed node stays dead): the consumer retries through the failover,
    each apply waits for the replica (``wait_replicas``), and the sums equal the reference."""
    try:
        cluster = RedisCluster().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    try:
        suffix = uuid.uuid4().hex[:8]
        bus = KafkaBus(broker.bootstrap)
        store = RedisStore.from_url(cluster.url, timeout_s=1.0, cluster=True, wait_replicas=1)
        infra = Infra(bus, store, f"feedback-{suffix}", f"dlq-{suffix}", f"group-{suffix}", "cluster", f"v-{suffix}")
        bus.ensure_topics({infra.topic: 4, infra.dlq: 1})
        contexts, events = scenario(infra.version, n_requests=200, seed=7)
        for ctx in contexts:
            store.put_context(ctx, ttl_s=600)
        consumer = infra.consumer(max_records=40)
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
        thread.start()
        producer = bus.producer()
        third = len(events) // 3
        producer.send_and_wait([Message(infra.topic, e.item_id.encode(), e.encode()) for e in events[:third]], 10.0)
        deadline = time.monotonic() + 60
        while consumer.stats.events == 0:
            assert time.monotonic() < deadline, "the consumer never applied a batch"
            time.sleep(0.02)
        victim = cluster.kill_master()  # mid-run: batches are in flight
        producer.send_and_wait([Message(infra.topic, e.item_id.encode(), e.encode()) for e in events[third:]], 10.0)
        cluster.wait_failover(victim)
        expected = reference(contexts, events)
        while consumer.stats.events < len(events) or not _matches(store, infra.version, expected):
            assert time.monotonic() < deadline + 60, f"applied {consumer.stats.events} of {len(events)}"
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=20)
        producer.close()
        assert consumer.stats.store_errors > 0, "the failover was not seen: the test proved nothing"
        assert_matches(store, infra.version, expected)
    finally:
        cluster.cleanup()


def test_the_broker_reports_group_lag_that_grows_while_no_member_is_alive() -> None:
    """Lag from the broker's offsets (end minus committed), not from a consumer's own report:
    with every member gone it still counts what arrives. On the embedded bus only: the test
    broker (Tansu 0.6) answers ListOffsets with the last batch's base offset, not the log end,
    so its lag reads low by up to a batch (found here; `KafkaBus.group_lag` follows Kafka)."""
    suffix = uuid.uuid4().hex[:8]
    infra = Infra(MemoryBus(), MemoryStore(), f"feedback-{suffix}", f"dlq-{suffix}", f"group-{suffix}", "memory", "v")
    contexts, events = scenario(infra.version, n_requests=20, seed=9)
    publish(infra, contexts, events)
    assert sum(infra.bus.group_lag(infra.group, infra.topic).values()) == len(events)  # nothing committed yet
    consumer = infra.consumer()
    try:
        drain([consumer], len(events))
    finally:
        consumer.close()
    assert sum(infra.bus.group_lag(infra.group, infra.topic).values()) == 0
    publish(infra, [], events[:7])  # no member alive now
    assert sum(infra.bus.group_lag(infra.group, infra.topic).values()) == 7


def test_fresh_items_reaching_50_impressions_match_a_hand_count() -> None:
    """The dashboard's "fresh items reaching 50 impressions": by hand, one item (fresh, 60
    impressions) crosses the line; one fresh item stops at 49; an old item's 60 do not count.
    Batches of 7 make the crossing land inside a batch, not on its edge."""
    suffix = uuid.uuid4().hex[:8]
    infra = Infra(MemoryBus(), MemoryStore(), f"feedback-{suffix}", f"dlq-{suffix}", f"group-{suffix}", "memory", "v")
    contexts, events = [], []
    ages = {"new-a": 3600.0, "new-b": 7200.0, "old": 10 * 86400.0}
    for r in range(60):
        rid = f"fresh-{r}"
        items = dict.fromkeys(ages, (0.1, False))
        contexts.append(RequestContext(rid, "home", infra.version, [0], [1.0], items, 0.0, ages=dict(ages)))
        for item in ages:
            if item != "new-b" or r < 49:
                events.append(FeedbackEvent(f"{rid}-{item}", rid, item, "impression", 0.0, time.time()))
    publish(infra, contexts, events)
    publish(infra, [], events[:30])  # redelivered duplicates: counted once
    consumer = infra.consumer(max_records=7)
    try:
        drain([consumer], len(events) + 30)
    finally:
        consumer.close()
    minute = int(time.time() // 60)
    rows = infra.store.read_stats("home", [minute - 1, minute])
    assert sum(row.get("fresh50", 0) for row in rows) == 1
    assert sum(row.get("imp_age_lt_1d", 0) for row in rows) == 60 + 49


def coin_scenario(version: str, surface: str) -> tuple[list[RequestContext], list[FeedbackEvent]]:
    """Requests with an explore coin, the slider moved from 0.2 to 0.5 half-way, one degraded
    request (no coin), several clicks per request, double clicks, and a top slot known only by
    its click (the click implies the impression)."""
    rng = np.random.default_rng(11)
    contexts, events = [], []
    for r in range(41):
        rid = f"coin-{r}"
        p = -1.0 if r == 40 else 0.2 if r < 20 else 0.5
        coin = p > 0 and bool(rng.random() < p)
        items = {f"item-{j}": (0.1, False) for j in rng.choice(12, 3, replace=False)}
        positions = {item: n for n, item in enumerate(items)}
        contexts.append(
            RequestContext(rid, surface, version, [0, 1], [0.5, 0.5], items, 0.0, positions=positions,
                           explore_coin=coin, explore_p=p)
        )  # fmt: skip
        for n, item in enumerate(items):
            if not (r % 7 == 0 and n == 0):  # every 7th request's top slot: its click only
                events.append(FeedbackEvent(f"{rid}-{n}-i", rid, item, "impression", 0.0, time.time()))
            if rng.random() < 0.5 or (r % 7 == 0 and n == 0):
                events.append(FeedbackEvent(f"{rid}-{n}-c", rid, item, "click", 1.0, time.time()))
                if rng.random() < 0.3:
                    events.append(FeedbackEvent(f"{rid}-{n}-c2", rid, item, "click", 1.0, time.time()))
    return contexts, events


def coin_reference(contexts: list[RequestContext], events: list[FeedbackEvent]) -> dict[str, int]:
    """The coin counters by hand: requests, clicks and Σ c² per (side, p), from the events."""
    by_id = {c.request_id: c for c in contexts}
    clicked = {(e.request_id, e.item_id) for e in events if e.type == "click"}
    want: dict[str, int] = {}
    for ctx in contexts:
        if ctx.explore_p < 0:
            continue
        side = "explore" if ctx.explore_coin else "greedy"
        c = sum((ctx.request_id, item) in clicked for item in ctx.items)
        for stat, n in (("req", 1), ("clk", c), ("clk2", c * c)):
            key = f"coin_{side}_{stat}@{ctx.explore_p!r}"
            want[key] = want.get(key, 0) + n
    assert all(e.request_id in by_id for e in events)
    return {k: v for k, v in want.items() if v}


def test_coin_counters_match_a_hand_count(infra: Infra) -> None:
    """What the what-if dial reads: per coin side and p, requests (counted at their top slot),
    clicks, and Σ c² exactly, though a request's clicks reach different partitions and batches
    (7 events a batch); a redelivery of every event counts nothing again."""
    surface = f"coin-{uuid.uuid4().hex[:8]}"  # the counters are per surface, not per version
    contexts, events = coin_scenario(infra.version, surface)
    publish(infra, contexts, events)
    consumer = infra.consumer(max_records=7)
    try:
        drain([consumer], len(events))
        want = coin_reference(contexts, events)
        assert {k.split("@")[1] for k in want} == {"0.2", "0.5"} and any("explore" in k for k in want)
        # Some request got several clicks (Σ c² > Σ c), else the squares would go untested.
        assert any(v > want[k.replace("clk2", "clk")] for k, v in want.items() if "_clk2@" in k)

        def counted() -> dict[str, int]:
            minute = int(time.time() // 60)
            out: dict[str, int] = {}
            for row in infra.store.read_stats(surface, range(minute - 3, minute + 1)):
                for k, v in row.items():
                    if k.startswith("coin_"):
                        out[k] = out.get(k, 0) + v
            return out

        assert counted() == want
        publish(infra, [], events)
        drain([consumer], 2 * len(events))
        assert counted() == want
    finally:
        consumer.close()


def test_without_the_credit_read_a_request_counts_as_every_slot_clicked() -> None:
    """The bound when the post-apply read fails: Σ c² from c = slots, never an understatement."""

    class Down(MemoryStore):
        def credits(self, version: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
            raise StoreUnavailable("down")

    ctx = RequestContext("r", "home", "v", [0], [1.0], dict.fromkeys("abc", (0.1, False)), 0.0, explore_p=0.2)
    consumer = FeedbackConsumer(MemoryBus(), Down())
    try:
        assert consumer._clicks_now(Counter({"r": 1}), {"r": ctx}) == {"r": 3}
    finally:
        consumer.close()
