"""One contract, two stores: the embedded one and a real Redis server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from bench.services import free_port
from streaming.events import EventError, RequestContext
from streaming.redis_store import RedisStore, context_key, credit_key, mark_key, stats_key, trending_key
from streaming.stores import Applied, Charge, ItemDelta, MemoryStore, Store, StoreUnavailable


@pytest.fixture(params=["memory", "redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        # The fleet's serving and retirement records are server-wide: each test starts clean.
        redis.Redis.from_url(url).flushdb()
        yield RedisStore.from_url(url, timeout_s=2.0)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster.from_url(cluster.url)
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
        # Every apply waits for the master's replica, as a cluster deployment is configured.
        yield RedisStore(client, wait_replicas=1, wait_timeout_ms=2000)


@pytest.fixture
def version() -> str:
    return uuid.uuid4().hex[:12]  # a fresh namespace per test


def delta(
    item: str,
    offset: int,
    coords: list[int],
    w2: list[float],
    b: list[float],
    low: int | None = None,
    credits: dict[str, str] | None = None,
) -> ItemDelta:
    return ItemDelta(
        item,
        offset if low is None else low,
        offset,
        np.array(coords, dtype=np.int64),
        np.array(w2),
        np.array(b),
        credits or {},
    )


TTL = 60.0


def test_missing_statistics_read_as_zero(store: Store, version: str) -> None:
    w2, b = store.gather(version, ["never-seen", "x"], np.array([0, 5]))
    assert w2.shape == b.shape == (2, 2)
    assert not w2.any() and not b.any()


def test_apply_then_gather(store: Store, version: str) -> None:
    assert store.apply(version, 0, [delta("a", 10, [1, 3], [0.25, 0.5], [0.1, -0.2])], TTL) == [Applied.APPLIED]
    w2, b = store.gather(version, ["a", "b"], np.array([3, 1, 2]))
    np.testing.assert_allclose(w2, [[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(b, [[-0.2, 0.1, 0.0], [0.0, 0.0, 0.0]])


def test_redelivered_batch_changes_nothing_twice(store: Store, version: str) -> None:
    batch = [delta("a", 7, [0], [1.0], [0.5], credits={"r1": "i"}), delta("b", 9, [2], [0.5], [0.25])]
    assert store.apply(version, 3, batch, TTL) == [Applied.APPLIED, Applied.APPLIED]
    assert store.apply(version, 3, batch, TTL) == [Applied.DUPLICATE, Applied.DUPLICATE]
    w2, b = store.gather(version, ["a", "b"], np.array([0, 2]))
    np.testing.assert_allclose(w2, [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(b, [[0.5, 0.0], [0.0, 0.25]])
    assert store.watermarks(version, 3, ["a", "b", "c"]) == {"a": 7, "b": 9, "c": -1}


def test_partly_applied_range_is_a_conflict_and_changes_nothing(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 150, [0], [1.0], [1.0], low=100)], TTL)
    assert store.apply(version, 0, [delta("a", 250, [0], [5.0], [5.0], low=120)], TTL) == [Applied.CONFLICT]
    w2, _ = store.gather(version, ["a"], np.array([0]))
    assert w2[0, 0] == pytest.approx(1.0)
    assert store.watermarks(version, 0, ["a"]) == {"a": 150}


def test_watermarks_are_per_partition(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 5, [0], [1.0], [1.0])], TTL)
    assert store.apply(version, 1, [delta("a", 5, [0], [1.0], [1.0])], TTL) == [Applied.APPLIED]
    w2, _ = store.gather(version, ["a"], np.array([0]))
    assert w2[0, 0] == pytest.approx(2.0)


def test_credits_are_set_with_the_statistics_and_merge(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [0.0], credits={"r1": "i", "r2": "ic"})], TTL)
    store.apply(version, 0, [delta("a", 2, [0], [0.0], [1.0], credits={"r1": "c"})], TTL)
    got = store.credits(version, [("a", "r1"), ("a", "r2"), ("a", "r3"), ("b", "r1")])
    assert sorted(got[("a", "r1")]) == ["c", "i"]
    assert sorted(got[("a", "r2")]) == ["c", "i"]
    assert got[("a", "r3")] == "" and got[("b", "r1")] == ""


def test_credits_expire_with_the_attribution_window(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [0.0], credits={"r1": "i"})], credit_ttl_s=0.05)
    time.sleep(0.15)
    assert store.credits(version, [("a", "r1")]) == {("a", "r1"): ""}


def test_versions_are_separate_namespaces(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [1.0])], TTL)
    w2, _ = store.gather(version + "-next", ["a"], np.array([0]))
    assert w2[0, 0] == 0.0


def test_a_version_is_listed_and_dropped_whole(store: Store, version: str) -> None:
    other = version + "-next"
    store.apply(
        version, 0, [delta("a", 1, [0], [1.0], [1.0], credits={"r1": "ic"}), delta("b", 2, [1], [1.0], [0.5])], TTL
    )
    store.apply(other, 0, [delta("a", 1, [0], [2.0], [2.0])], TTL)
    store.count_impressions(version, {"a": 3})
    now = time.time()
    assert store.heartbeat(version, now - 1000.0) and store.heartbeat(other, now)
    assert {version, other} <= set(store.stats_versions())
    assert abs(store.stats_versions()[version] - now) < 60.0  # dated by its first write
    assert store.serving_versions()[version] == now - 1000.0 and store.serving_versions()[other] == now

    assert store.drop_version(version) == 0  # unmarked: nothing is deleted
    assert store.begin_retire(version, now, grace_s=500.0, lease_s=30.0)
    assert version in store.retiring_versions()
    dropped = store.drop_version(version)
    assert dropped >= 5  # statistics and watermarks of a and b, a's credit (and its fresh count)
    w2, b = store.gather(version, ["a", "b"], np.array([0, 1]))
    assert not w2.any() and not b.any()
    assert store.watermarks(version, 0, ["a", "b"]) == {"a": -1, "b": -1}
    assert store.credits(version, [("a", "r1")]) == {("a", "r1"): ""}
    assert version not in store.stats_versions() and version not in store.serving_versions()
    assert version not in store.retiring_versions()
    # The other version is untouched.
    w2, _ = store.gather(other, ["a"], np.array([0]))
    assert w2[0, 0] == 2.0 and other in store.stats_versions()
    assert store.drop_version(version) == 0  # idempotent: every consumer may retire
    store.heartbeat(other, 0.0)  # the serving record keeps the latest report
    assert store.serving_versions()[other] == now


def test_retirement_is_checked_and_marked_atomically(store: Store, version: str) -> None:
    stale, live = version, version + "-live"
    now = time.time()
    store.apply(stale, 0, [delta("a", 1, [0], [1.0], [1.0])], TTL)
    store.heartbeat(stale, now - 100.0)
    assert not store.begin_retire(stale, now, grace_s=60.0, lease_s=30.0)  # no live replica: no evidence
    store.heartbeat(live, now)
    assert not store.begin_retire(stale, now, grace_s=80.0, lease_s=30.0)  # reported within grace + lease
    assert not store.begin_retire(live, now, grace_s=60.0, lease_s=30.0)
    assert store.begin_retire(stale, now, grace_s=60.0, lease_s=30.0)
    # While marked, a report is refused (no replica may start serving it) and nothing is written.
    assert not store.heartbeat(stale, now + 1.0)
    assert store.serving_versions()[stale] == now - 100.0
    assert store.begin_retire(stale, now, grace_s=1e9, lease_s=30.0)  # marked stays marked
    store.drop_version(stale)
    # Once deleted, the version may be served again, from an empty namespace.
    assert store.heartbeat(stale, now + 2.0)
    w2, _ = store.gather(stale, ["a"], np.array([0]))
    assert w2[0, 0] == 0.0


def test_a_namespace_without_a_serving_record_is_judged_by_its_first_write(store: Store, version: str) -> None:
    now = time.time()
    store.heartbeat(version + "-live", now)
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [1.0])], TTL)
    assert not store.begin_retire(version, now, grace_s=60.0, lease_s=30.0)  # written just now
    store.heartbeat(version + "-live", now + 91.0)
    assert store.begin_retire(version, now + 91.0, grace_s=60.0, lease_s=30.0)
    assert store.drop_version(version) >= 2


def test_doubles_survive_the_round_trip_exactly(store: Store, version: str) -> None:
    tiny, big = 1.2345678901234567e-7, 123456.78901234567
    store.apply(version, 0, [delta("a", 1, [0, 1], [tiny, big], [-tiny, -big])], TTL)
    w2, b = store.gather(version, ["a"], np.array([0, 1]))
    assert w2[0].tolist() == [tiny, big]
    assert b[0].tolist() == [-tiny, -big]
    store.apply(version, 0, [delta("a", 2, [0], [0.1], [0.2])], TTL)
    w2, b = store.gather(version, ["a"], np.array([0]))
    assert w2[0, 0] == tiny + 0.1 and b[0, 0] == -tiny + 0.2  # the same double arithmetic as numpy


def test_contexts_round_trip_and_expire(store: Store) -> None:
    ctx = RequestContext("req-1", "home", "v1", [3, 9], [0.75, 0.25], {"i1": (0.12, False), "i2": (0.05, True)}, 1700.0)
    store.put_context(ctx, ttl_s=0.2)
    assert store.get_contexts(["req-1", "nope"]) == {"req-1": ctx}
    time.sleep(0.35)
    assert store.get_contexts(["req-1"]) == {}


def test_redis_keys_follow_the_documented_layout(redis_url: str, version: str) -> None:
    store = RedisStore.from_url(redis_url, timeout_s=2.0)
    store.apply(version, 2, [delta("item-9", 4, [7], [0.5], [0.25], credits={"req-5": "ic"})], TTL)
    store.put_context(RequestContext("req-5", "home", version, [7], [1.0], {"item-9": (0.1, True)}, 1.0), ttl_s=TTL)
    client = redis.Redis.from_url(redis_url)
    key = f"om:v:{version}:stats:{{item-9}}"
    assert key == stats_key(version, "item-9")
    assert client.type(key) == b"string"
    pairs = np.frombuffer(client.get(key), dtype="<f8").reshape(-1, 2)  # type: ignore[arg-type]  # bytes
    assert pairs.shape == (8, 2) and pairs[7].tolist() == [0.5, 0.25] and not pairs[:7].any()
    marks = f"om:v:{version}:mark:{{item-9}}"
    assert marks == mark_key(version, "item-9")
    assert client.hgetall(marks) == {b"2": b"4"}
    credit = credit_key(version, "item-9", "req-5")
    assert credit == f"om:v:{version}:credit:{{item-9}}:req-5"
    assert client.get(credit) == b"ic"
    assert 0 < client.pttl(credit) <= TTL * 1000
    assert 0 < client.pttl(context_key("req-5")) <= TTL * 1000
    store.put_trending(version, {"item-9": 0.5}, keep=10)
    assert client.type(trending_key(version)) == b"zset" and trending_key(version) == f"om:v:{version}:trending"
    assert client.zscore(trending_key(version), "item-9") == 0.5
    with pytest.raises(EventError, match="item_id"):
        stats_key(version, "bad{tag}")
    with pytest.raises(EventError, match="item_id"):
        store.gather(version, ["ok", "bad{tag}"], np.array([0]))


def test_unreachable_redis_reports_not_ready() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    assert store.ping() is False
    with pytest.raises(StoreUnavailable, match="redis"):
        store.gather("v", ["a"], np.array([0]))
    for call in (
        lambda: store.gather_live("v", ["a"], np.array([0])),
        lambda: store.put_item("a", 1.0, b"{}"),
        lambda: store.items_since(0, 10),
        lambda: store.get_item("a"),
    ):
        with pytest.raises(StoreUnavailable, match="redis"):
            call()


def test_surface_settings_and_their_change_log(store: Store) -> None:
    name = "s-" + uuid.uuid4().hex[:8]
    store.put_surface(name, b'{"alpha": 0.1}', b'{"n": 1}')
    store.put_surface(name, b'{"alpha": 0.2}', b'{"n": 2}')
    assert store.get_surfaces()[name] == b'{"alpha": 0.2}'
    assert store.surface_changes(2) == [b'{"n": 2}', b'{"n": 1}']


def test_minute_counters_add_up_per_surface_and_expire(store: Store) -> None:
    surface = "s-" + uuid.uuid4().hex[:8]
    minute = int(time.time() // 60)
    store.incr_stats([(surface, minute, "req", 2), (surface, minute, "req", 3), (surface, minute - 1, "slots", 7)])
    assert store.read_stats(surface, [minute - 2, minute - 1, minute]) == [{}, {"slots": 7}, {"req": 5}]
    assert surface in store.stats_surfaces()
    if isinstance(store, RedisStore):
        ttl = store._r.ttl(f"om:stats:{surface}:{minute}")  # the store's own client: standalone or cluster
        assert 0 < ttl <= 2 * 3600


def test_consumer_lag_is_a_gauge(store: Store) -> None:
    group = "g-" + uuid.uuid4().hex[:8]
    store.put_lag(group, {0: 5, 1: 0})
    store.put_lag(group, {0: 2})
    assert store.get_lag(group)[0] == 2


def test_trending_keeps_the_highest_positive_scores_and_goes_with_its_version(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [1.0])], TTL)  # the consumer writes both
    store.put_trending(version, {"a": 0.1, "b": 0.3, "c": -0.2, "d": 0.0}, keep=3)
    assert store.trending(version, 10) == ["b", "a"]  # positive only, best first
    store.put_trending(version, {"e": 0.2, "a": 0.4}, keep=3)  # rewritten, and one more
    assert store.trending(version, 10) == ["a", "b", "e"]  # "c" and "d" fell off the kept three
    assert store.trending(version, 2) == ["a", "b"]
    assert store.trending(version + "-other", 10) == []
    store.put_trending(version, {"a": -0.1}, keep=3)  # its residual fell: no longer trending
    assert store.trending(version, 10) == ["b", "e"]

    # Retired once another version is live and its own last report is old.
    assert store.heartbeat(version, time.time() - 1000.0) and store.heartbeat(version + "-next", time.time())
    assert store.begin_retire(version, time.time(), grace_s=1.0, lease_s=1.0)
    assert store.drop_version(version) >= 2  # a's statistics and watermark, the trending list
    assert store.trending(version, 10) == []


# The live catalogue (streaming/catalogue.py): last writer wins on ts, one sequence number.


def test_catalogue_last_writer_wins_and_numbers_each_change(store: Store, version: str) -> None:
    assert store.items_since(0, 10) == ([], 0)
    assert store.get_item("new-a") is None
    assert store.put_item("new-a", 10.0, b"a@10") == 1
    assert store.put_item("new-b", 5.0, b"b@5") == 2
    # Older or as old as what is stored: refused, the sequence does not move (a replay).
    assert store.put_item("new-a", 9.0, b"a@9") is None
    assert store.put_item("new-a", 10.0, b"a@10 again") is None
    assert store.get_item("new-a") == b"a@10"
    # The same change again (the follower got there first): it landed, at its number.
    assert store.put_item("new-a", 10.0, b"a@10") == 1
    assert store.put_item("new-a", 11.0, b"a@11") == 3
    # Each item once, at its latest change, in sequence order.
    assert store.items_since(0, 10) == ([(2, b"b@5"), (3, b"a@11")], 3)
    assert store.items_since(2, 10) == ([(3, b"a@11")], 3)
    assert store.items_since(3, 10) == ([], 3)
    assert store.items_since(0, 1) == ([(2, b"b@5")], 3)  # paged: the caller reads on from 2


def test_the_statistics_read_carries_the_catalogue_sequence(store: Store, version: str) -> None:
    store.apply(version, 0, [delta("cat-x", 1, [0], [1.0], [0.5])], TTL)
    w2, b, seq = store.gather_live(version, ["cat-x", "cat-y"], np.array([0]))
    assert seq == 0 and w2.tolist() == [[1.0], [0.0]] and b.tolist() == [[0.5], [0.0]]
    store.put_item("cat-y", 1.0, b"y")
    assert store.gather_live(version, ["cat-x"], np.array([0]))[2] == 1
    assert store.gather_live(version, [], np.array([0]))[2] == 1  # no candidates: still the sequence


def test_catalogue_keys_are_documented_and_single_slot(redis_url: str) -> None:
    from streaming.redis_store import ITEMS_CHANGES_KEY, ITEMS_KEY, ITEMS_SEQ_KEY, ITEMS_TS_KEY

    r = redis.Redis.from_url(url := redis_url)
    r.flushdb()
    RedisStore.from_url(url).put_item("doc-1", 3.5, b'{"x": 1}')
    assert r.hget(ITEMS_KEY, "doc-1") == b'{"x": 1}'
    assert float(r.hget(ITEMS_TS_KEY, "doc-1") or 0) == 3.5
    assert r.zscore(ITEMS_CHANGES_KEY, "doc-1") == 1.0 and r.get(ITEMS_SEQ_KEY) == b"1"
    # One hash tag: the put script touches one slot in a Redis Cluster.
    assert {k.split("{")[1].split("}")[0] for k in (ITEMS_KEY, ITEMS_TS_KEY, ITEMS_CHANGES_KEY, ITEMS_SEQ_KEY)} == {
        "items"
    }
    with pytest.raises(EventError, match="braces"):
        RedisStore.from_url(url).put_item("a{b}", 1.0, b"")


def test_rate_limits_take_a_burst_then_refuse_with_the_wait(store: Store) -> None:
    subject = f"user:{uuid.uuid4().hex[:8]}"
    limit = Charge(subject, cost=40, rate=10.0, burst=100)
    assert store.take([limit, limit]) == [0.0, 0.0]  # 80 of the burst of 100
    (wait,) = store.take([limit])  # 120 would be owed: 2 s of debt over the burst
    assert 1.5 < wait <= 2.0
    # A refusal charges nothing: 20 more still fit.
    assert store.take([Charge(subject, 20, 10.0, 100)]) == [0.0]
    # Another subject is not affected; a cost above the burst is charged as the whole burst.
    other = Charge(f"client:{uuid.uuid4().hex[:8]}", cost=500, rate=10.0, burst=100)
    assert store.take([other]) == [0.0]
    assert store.take([Charge(other.subject, 1, 10.0, 100)])[0] > 0


def test_rate_limits_are_charged_one_by_one(store: Store) -> None:
    tight = Charge(f"user:{uuid.uuid4().hex[:8]}", cost=10, rate=1.0, burst=10)
    loose = Charge(f"client:{uuid.uuid4().hex[:8]}", cost=10, rate=1.0, burst=15)
    assert store.take([tight, loose]) == [0.0, 0.0]
    waits = store.take([tight, loose])
    assert waits[0] > 9.0 and waits[1] > 4.0  # both refused: neither charged
    small = Charge(loose.subject, 5, 1.0, 15)
    assert store.take([small]) == [0.0]  # exactly the 5 left: the refusal above took nothing
    # The debt is paid at the rate: after 1.1 s, one more unit fits.
    time.sleep(1.1)
    assert store.take([Charge(loose.subject, 1, 1.0, 15)]) == [0.0]


def test_recent_clicks_are_a_capped_set_latest_first(store: Store, version: str) -> None:
    user = f"user-{version}"
    assert store.recent_clicks(user, 10) == []
    store.add_clicks([(user, "a", 10.0), (user, "b", 20.0), (user + "-other", "z", 5.0)], keep=3, ttl_s=60.0)
    assert store.recent_clicks(user, 10) == ["b", "a"]
    store.add_clicks([(user, "a", 10.0), (user, "b", 20.0)], keep=3, ttl_s=60.0)  # redelivered
    assert store.recent_clicks(user, 10) == ["b", "a"]
    store.add_clicks([(user, "a", 30.0), (user, "c", 25.0), (user, "d", 26.0)], keep=3, ttl_s=60.0)
    assert store.recent_clicks(user, 10) == ["a", "d", "c"]  # "b" fell off the kept three
    store.add_clicks([(user, "a", 1.0)], keep=3, ttl_s=60.0)  # an older click never moves it back
    assert store.recent_clicks(user, 2) == ["a", "d"]
    assert store.recent_clicks(user + "-other", 10) == ["z"]


def test_recent_clicks_expire_after_the_last_click(store: Store, version: str) -> None:
    user = f"user-{version}"
    store.add_clicks([(user, "a", 10.0)], keep=3, ttl_s=1.0)
    time.sleep(1.3)
    assert store.recent_clicks(user, 10) == []


def test_an_arms_running_total_bucket_lives_while_written(store: Store) -> None:
    """An experiment arm's totals sit in minute 0 (streaming/opstats.py), kept 30 days after
    their *last* write, however old the minute."""
    surface = "s-" + uuid.uuid4().hex[:8] + "@x-1/control"
    store.incr_stats([(surface, 0, "req", 4)])
    store.incr_stats([(surface, 0, "req", 1), (surface, int(time.time() // 60), "req", 1)])
    assert store.read_stats(surface, [0]) == [{"req": 5}]
    if isinstance(store, RedisStore):
        ttl = store._r.ttl(f"om:stats:{surface}:0")
        assert 30 * 86400 - 5 < ttl <= 30 * 86400


def test_the_embedded_store_expires_buckets_after_their_last_write() -> None:
    """A minute bucket two hours after its last write, the total bucket (minute 0) 30 days."""
    now = [1_000_000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.incr_stats([("s@x/a", 0, "req", 1), ("s@x/a", 16_000, "req", 1)])
    now[0] += 3600
    store.incr_stats([("s@x/a", 0, "req", 1), ("s@x/a", 16_001, "req", 1)])
    now[0] += 3600 + 1
    store.incr_stats([("other", 6, "req", 1)])  # expiry is checked on a write
    assert store.read_stats("s@x/a", [0, 16_000, 16_001]) == [{"req": 2}, {}, {"req": 1}]
    now[0] += 29 * 86400
    store.incr_stats([("other", 7, "req", 1)])
    assert store.read_stats("s@x/a", [0]) == [{"req": 2}]
    now[0] += 86400
    store.incr_stats([("other", 8, "req", 1)])
    assert store.read_stats("s@x/a", [0]) == [{}]


def test_a_batch_reads_every_partitions_marks_and_credits_at_once(store: Store, version: str) -> None:
    other = version + "-b"
    store.apply(version, 0, [delta("a", 4, [0], [1.0], [0.0], credits={"r1": "ic"})], TTL)
    store.apply(other, 2, [delta("b", 9, [0], [1.0], [0.0], credits={"r2": "i"})], TTL)
    marks, flags = store.read_state(
        [(version, 0, "a"), (version, 1, "a"), (other, 2, "b"), (other, 2, "a"), (version, 0, "~om:calibration:x")],
        [(version, "a", "r1"), (other, "b", "r2"), (version, "b", "r2"), (other, "a", "r1")],
    )
    assert marks == [4, -1, 9, -1, -1]
    assert sorted(flags[0]) == ["c", "i"] and flags[1:] == ["i", "", ""]
    assert store.read_state([], []) == ([], [])


def test_a_redelivered_multi_partition_apply_changes_nothing_twice(store: Store, version: str) -> None:
    """``apply_many``: several partitions and versions in one call, each delta by the same rules."""
    other = version + "-b"
    batches = [
        (version, 0, [delta("a", 7, [0], [1.0], [0.5], credits={"r1": "i"}), delta("b", 3, [1], [2.0], [1.0])]),
        (version, 1, [delta("c", 5, [0, 2], [0.5, 0.5], [0.25, -0.25], low=2)]),
        (other, 1, [delta("a", 5, [0], [4.0], [4.0])]),
    ]
    applied = store.apply_many(batches, TTL)
    assert applied == [[Applied.APPLIED] * 2, [Applied.APPLIED], [Applied.APPLIED]]
    assert store.apply_many(batches, TTL) == [[Applied.DUPLICATE] * 2, [Applied.DUPLICATE], [Applied.DUPLICATE]]
    # A range partly applied is a conflict and changes nothing, beside batches that apply.
    again = [(version, 1, [delta("c", 9, [0], [9.0], [9.0], low=4)]), (version, 2, [delta("a", 1, [0], [1.0], [0.0])])]
    assert store.apply_many(again, TTL) == [[Applied.CONFLICT], [Applied.APPLIED]]
    w2, b = store.gather(version, ["a", "b", "c"], np.array([0, 1, 2]))
    np.testing.assert_allclose(w2, [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.0, 0.5]])
    np.testing.assert_allclose(b, [[0.5, 0.0, 0.0], [0.0, 1.0, 0.0], [0.25, 0.0, -0.25]])
    assert store.gather(other, ["a"], np.array([0]))[0].tolist() == [[4.0]]
    assert store.credits(version, [("a", "r1")]) == {("a", "r1"): "i"}
    assert version in store.stats_versions() and other in store.stats_versions()
