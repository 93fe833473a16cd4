"""``streaming.rebuild``: the statistics replayed from the topics equal the live consumer's.

The live side is the real consumer (``FeedbackConsumer``) on the same topics, batched
differently from the replay, with the failure cases that make the two decide differently
unless the replay reads what the live side did: contexts never stored (dead-lettered live),
decisions of other versions, duplicates, orphans. Embedded bus and store, and a real broker
with real Redis servers (the rebuild goes into a second, empty one).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from bandits.calibration import BINS
from bench.services import Broker, RedisServer, ServiceUnavailable
from streaming.bus import Bus, MemoryBus, Message
from streaming.consumer import FeedbackConsumer
from streaming.events import FeedbackEvent, RequestContext, calibration_item, examination_item
from streaming.kafka_bus import KafkaBus
from streaming.rebuild import RebuildRefused, RebuildReport, rebuild, verify
from streaming.redis_store import RedisStore
from streaming.stores import MemoryStore, Store, StoreUnavailable
from tests.conftest import unavailable

WINDOW_S = 3600.0


@dataclass
class Topics:
    bus: Bus
    decisions: str
    feedback: str
    dlq: str
    version: str


@dataclass
class World:
    topics: Topics
    live: Store
    empty: Store  # a second store, empty: the target of a rebuild "into an empty Redis"
    kind: str


@pytest.fixture(scope="module")
def second_redis() -> Iterator[str]:
    try:
        server = RedisServer().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield server.url
    server.cleanup()


@pytest.fixture(params=["memory", "real"])
def world(request: pytest.FixtureRequest) -> World:
    tag = uuid.uuid4().hex[:8]
    if request.param == "memory":
        bus: Bus = MemoryBus()
        live: Store = MemoryStore()
        empty: Store = MemoryStore()
    else:
        broker: Broker = request.getfixturevalue("broker")
        bus = KafkaBus(broker.bootstrap)
        live = RedisStore.from_url(request.getfixturevalue("redis_url"), timeout_s=5.0)
        target = RedisStore.from_url(request.getfixturevalue("second_redis"), timeout_s=5.0)
        target._r.flushall()  # one module-scoped server per test module; each test starts empty
        empty = target
    topics = Topics(bus, f"decisions-{tag}", f"feedback-{tag}", f"dlq-{tag}", f"v-{tag}")
    bus.ensure_topics({topics.decisions: 2, topics.feedback: 4, topics.dlq: 1})
    return World(topics, live, empty, str(request.param))


def scenario(
    version: str, n_requests: int, seed: int, other: str = ""
) -> tuple[list[RequestContext], list[FeedbackEvent]]:
    """Requests with everything the consumer weighs: sparse contexts and a pool coordinate,
    examination weights, calibrated priors in popularity groups, randomised slates; feedback with
    impressions, clicks, rewards, double clicks and clicks whose impression never came."""
    rng = np.random.default_rng(seed)
    now = time.time()
    contexts, events = [], []
    for r in range(n_requests):
        rid = f"req-{seed}-{r}-{uuid.uuid4().hex[:6]}"
        idx = [*sorted(rng.choice(6, 2, replace=False).tolist()), 7]  # 7: the pool coordinate
        w = [*rng.dirichlet([1, 1]).round(3).tolist(), 1.0]
        names = [f"item-{j}" for j in rng.choice(15, 4, replace=False)]
        calibrated = rng.random() < 0.5
        contexts.append(
            RequestContext(
                rid,
                "home",
                other if other and r % 5 == 0 else version,
                idx,
                w,
                {n: (round(float(rng.random()) * 0.3, 4), bool(k == 3)) for k, n in enumerate(names)},
                now - 10.0,
                positions={n: k for k, n in enumerate(names)},
                exam={n: round(float(1 / np.log2(k + 2)), 6) for k, n in enumerate(names)},
                raw={n: round(float(rng.random()), 4) for n in names} if calibrated else {},
                groups={names[0]: 1} if calibrated else {},
                randomized=bool(rng.random() < 0.3),
                curve=[round(float(1 / np.log2(k + 2)), 6) for k in range(4)],
                pool=7,
                rewards=(0.0, 2.0),
            )
        )
        for n, item in enumerate(names):
            if rng.random() < 0.85:
                events.append(FeedbackEvent(f"{rid}-{n}-i", rid, item, "impression", 0.0, now))
            u = rng.random()
            if u < 0.3:
                events.append(FeedbackEvent(f"{rid}-{n}-c", rid, item, "click", 1.0, now))
                if rng.random() < 0.5:  # a double click: counts once
                    events.append(FeedbackEvent(f"{rid}-{n}-c2", rid, item, "click", 1.0, now))
            elif u < 0.4:
                value = round(float(rng.random()) * 2, 3)
                events.append(FeedbackEvent(f"{rid}-{n}-r", rid, item, "reward", value, now))
    rng.shuffle(events)  # numpy shuffles a list in place
    events.append(FeedbackEvent("orphan", "req-unknown", "item-1", "click", 1.0, now))
    return contexts, events


def publish(
    topics: Topics, live: Store, contexts: list[RequestContext], events: list[FeedbackEvent], unstored: int
) -> None:
    """As serving does: store the context, log the decision; then the feedback. The first
    ``unstored`` contexts are logged but never stored (a lease not yet held, or a store
    outage), so the live consumer dead-letters their feedback."""
    for ctx in contexts[unstored:]:
        live.put_context(ctx, ttl_s=600)
    producer = topics.bus.producer()
    try:
        producer.send_and_wait([Message(topics.decisions, c.request_id.encode(), c.encode()) for c in contexts], 10.0)
        producer.send_and_wait([Message(topics.feedback, e.item_id.encode(), e.encode()) for e in events], 10.0)
    finally:
        producer.close()


def consume_live(topics: Topics, live: Store, total: int, max_records: int = 7) -> FeedbackConsumer:
    """The live consumer, in small batches (the replay sums in larger ones), until it has
    consumed ``total`` events."""
    consumer = FeedbackConsumer(
        topics.bus,
        live,
        group=f"group-{uuid.uuid4().hex[:6]}",
        feedback_topic=topics.feedback,
        dead_letter_topic=topics.dlq,
        max_records=max_records,
        retire_every_s=None,
    )
    deadline = time.monotonic() + 90
    try:
        while consumer.stats.events < total:
            assert time.monotonic() < deadline, f"live consumer took {consumer.stats.events} of {total}"
            consumer.run_once()
    finally:
        consumer.close()
    return consumer


def replay(w: World, store: Store, **kwargs: object) -> RebuildReport:
    t = w.topics
    return rebuild(
        t.bus,
        store,
        decisions_topic=t.decisions,
        feedback_topic=t.feedback,
        dead_letter_topic=t.dlq,
        window_s=WINDOW_S,
        **kwargs,  # type: ignore[arg-type]  # test pass-through of the keyword options
    )


def loaded(w: World, n_requests: int = 40, seed: int = 0, unstored: int = 4) -> tuple[list[RequestContext], int]:
    contexts, events = scenario(w.topics.version, n_requests, seed, other=f"{w.topics.version}-old")
    publish(w.topics, w.live, contexts, events, unstored)
    live = consume_live(w.topics, w.live, len(events))
    # The scenario exercises what it claims: feedback the live side dead-lettered, duplicates.
    assert live.stats.counts["dead_unknown_request"] > 1
    assert live.stats.counts["duplicate"] >= 1
    return contexts, len(events)


def test_a_rebuild_into_an_empty_store_equals_the_live_statistics(world: World) -> None:
    contexts, _ = loaded(world)
    v = world.topics.version
    report = replay(world, world.empty, versions=[v], restore_contexts=True)
    assert report.versions == {v: v}
    assert report.counts["dead_in_live"] >= 1  # the unstored contexts' feedback, as live
    assert report.counts["other_version"] >= 1 and report.counts["missing_decision"] == 1  # the orphan
    worst, bad = verify(world.live, world.empty, report)
    assert worst <= 1e-9, bad
    # Not vacuous: what was compared holds statistics, pseudo-items included.
    items = sorted(report.items[v])
    assert calibration_item("home") in items and examination_item("home") in items
    w2, b = world.empty.gather(v, items, np.arange(2 * BINS))
    assert np.count_nonzero(w2) > 20 and np.count_nonzero(b) > 20
    # A request still inside its window can be joined again in the new store.
    assert contexts[-1].request_id in world.empty.get_contexts([contexts[-1].request_id])


def test_a_rebuild_beside_the_live_namespace_equals_it_and_touches_nothing_live(world: World) -> None:
    loaded(world, seed=1)
    v = world.topics.version
    before = world.live.gather(v, [f"item-{j}" for j in range(15)], np.arange(8))
    report = replay(world, world.live, versions=[v], suffix="-rb")
    assert report.versions == {v: f"{v}-rb"}
    worst, bad = verify(world.live, world.live, report)
    assert worst <= 1e-9, bad
    after = world.live.gather(v, [f"item-{j}" for j in range(15)], np.arange(8))
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert f"{v}-rb" in world.live.stats_versions()  # listed, so retirement deletes the copy later


def test_an_interrupted_rebuild_resumes_to_the_same_statistics(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(world, n_requests=60, seed=2)
    v = world.topics.version
    real_apply = world.empty.apply_many
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > 3:
            raise StoreUnavailable("the target went away mid-rebuild")
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]  # pass-through

    monkeypatch.setattr(world.empty, "apply_many", failing)
    with pytest.raises(StoreUnavailable):
        replay(world, world.empty, versions=[v], batch=40)
    monkeypatch.setattr(world.empty, "apply_many", real_apply)
    # Partly written: a plain second run is refused, a resumed one finishes.
    with pytest.raises(RebuildRefused, match="--resume"):
        replay(world, world.empty, versions=[v])
    report = replay(world, world.empty, versions=[v], resume=True, batch=40)
    assert report.counts["redelivered"] > 0  # what the first run applied was skipped, not re-added
    worst, bad = verify(world.live, world.empty, report)
    assert worst <= 1e-9, bad


def test_default_versions_are_those_still_within_retirement_horizon() -> None:
    bus, store = MemoryBus(), MemoryStore()
    now = time.time()
    old = RequestContext("r-old", "home", "v-old", [0], [1.0], {"a": (0.1, False)}, now - 3 * WINDOW_S)
    new = RequestContext("r-new", "home", "v-new", [0], [1.0], {"a": (0.1, False)}, now - 5)
    producer = bus.producer()
    producer.send_and_wait([Message("d", c.request_id.encode(), c.encode()) for c in (old, new)], 1.0)
    producer.send_and_wait([Message("f", b"a", FeedbackEvent("e", "r-new", "a", "click", 1.0, now).encode())], 1.0)
    report = rebuild(bus, store, decisions_topic="d", feedback_topic="f", dead_letter_topic=None, window_s=WINDOW_S)
    assert report.versions == {"v-new": "v-new"} and report.skipped_versions == ["v-old"]
    assert report.counts["credited_click"] == 1


def test_feedback_produced_after_its_window_is_not_credited() -> None:
    bus, store = MemoryBus(), MemoryStore()
    served = time.time() - WINDOW_S - 60  # the record is stamped now: past the window
    ctx = RequestContext("r", "home", "v", [0], [1.0], {"a": (0.1, False)}, served)
    producer = bus.producer()
    producer.send_and_wait([Message("d", b"r", ctx.encode())], 1.0)
    producer.send_and_wait([Message("f", b"a", FeedbackEvent("e", "r", "a", "click", 1.0, served).encode())], 1.0)
    report = rebuild(
        bus, store, decisions_topic="d", feedback_topic="f", dead_letter_topic=None, window_s=WINDOW_S, versions=["v"]
    )
    assert report.counts["late"] == 1 and report.counts["credited_click"] == 0
    assert report.contexts_restored == 0


def test_a_version_older_than_its_surviving_decisions_is_reported_partial() -> None:
    bus, store = MemoryBus(), MemoryStore()
    now = time.time()
    ctx = RequestContext("r", "home", "v", [0], [1.0], {"a": (0.1, False)}, now - 5)
    bus.producer().send_and_wait([Message("d", b"r", ctx.encode())], 1.0)
    kwargs = {"decisions_topic": "d", "feedback_topic": "f", "dead_letter_topic": None, "window_s": WINDOW_S}
    report = rebuild(bus, store, versions=["v", "gone"], births={"v": now - 7200}, **kwargs)  # type: ignore[arg-type]
    assert "retention" in report.partial["v"] and "no decision" in report.partial["gone"]
    report = rebuild(MemoryBus(), MemoryStore(), versions=["v"], births={"v": now - 30}, **kwargs)  # type: ignore[arg-type]
    assert "no decision" in report.partial["v"]
    fresh = MemoryBus()
    fresh.producer().send_and_wait([Message("d", b"r", ctx.encode())], 1.0)
    assert rebuild(fresh, MemoryStore(), versions=["v"], births={"v": now - 30}, **kwargs).partial == {}  # type: ignore[arg-type]


def test_renamed_contexts_are_never_stored() -> None:
    with pytest.raises(ValueError, match="no suffix"):
        rebuild(
            MemoryBus(),
            MemoryStore(),
            decisions_topic="d",
            feedback_topic="f",
            dead_letter_topic=None,
            window_s=WINDOW_S,
            suffix="-x",
            restore_contexts=True,
        )
