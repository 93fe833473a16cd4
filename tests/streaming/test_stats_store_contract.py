"""One contract, two stores: the embedded one and a real Redis server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from streaming.redis_store import RedisStatsStore, item_key
from streaming.stats_store import ItemDelta, MemoryStatsStore, StatsStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StatsStore]:
    if request.param == "memory":
        yield MemoryStatsStore()
    else:
        url = request.getfixturevalue("redis_url")
        yield RedisStatsStore.from_url(url, timeout_s=2.0)


@pytest.fixture
def version() -> str:
    return uuid.uuid4().hex[:12]  # a fresh namespace per test


def delta(item: str, offset: int, coords: list[int], w2: list[float], b: list[float]) -> ItemDelta:
    return ItemDelta(item, offset, np.array(coords, dtype=np.int64), np.array(w2), np.array(b))


def test_missing_statistics_read_as_zero(store: StatsStore, version: str) -> None:
    w2, b = store.gather(version, ["never-seen", "x"], np.array([0, 5]))
    assert w2.shape == b.shape == (2, 2)
    assert not w2.any() and not b.any()


def test_apply_then_gather(store: StatsStore, version: str) -> None:
    assert store.apply(version, 0, [delta("a", 10, [1, 3], [0.25, 0.5], [0.1, -0.2])]) == 1
    w2, b = store.gather(version, ["a", "b"], np.array([3, 1, 2]))
    np.testing.assert_allclose(w2, [[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(b, [[-0.2, 0.1, 0.0], [0.0, 0.0, 0.0]])


def test_redelivered_batch_changes_nothing_twice(store: StatsStore, version: str) -> None:
    batch = [delta("a", 7, [0], [1.0], [0.5]), delta("b", 9, [2], [0.5], [0.25])]
    assert store.apply(version, 3, batch) == 2
    assert store.apply(version, 3, batch) == 0
    w2, b = store.gather(version, ["a", "b"], np.array([0, 2]))
    np.testing.assert_allclose(w2, [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(b, [[0.5, 0.0], [0.0, 0.25]])
    assert store.watermarks(version, 3, ["a", "b", "c"]) == {"a": 7, "b": 9, "c": -1}


def test_watermarks_are_per_partition(store: StatsStore, version: str) -> None:
    store.apply(version, 0, [delta("a", 5, [0], [1.0], [1.0])])
    # The same offset number from another partition is a different event.
    assert store.apply(version, 1, [delta("a", 5, [0], [1.0], [1.0])]) == 1
    w2, _ = store.gather(version, ["a"], np.array([0]))
    assert w2[0, 0] == pytest.approx(2.0)
    assert store.watermarks(version, 0, ["a"]) == {"a": 5}
    assert store.watermarks(version, 1, ["a"]) == {"a": 5}


def test_versions_are_separate_namespaces(store: StatsStore, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [1.0], [1.0])])
    w2, _ = store.gather(version + "-next", ["a"], np.array([0]))
    assert w2[0, 0] == 0.0


def test_additions_commute(store: StatsStore, version: str) -> None:
    store.apply(version, 0, [delta("a", 1, [0], [0.1], [0.3])])
    store.apply(version, 1, [delta("a", 1, [0], [0.2], [-0.1])])
    other = version + "-swapped"
    store.apply(other, 1, [delta("a", 1, [0], [0.2], [-0.1])])
    store.apply(other, 0, [delta("a", 1, [0], [0.1], [0.3])])
    np.testing.assert_allclose(store.gather(version, ["a"], np.array([0])), store.gather(other, ["a"], np.array([0])))


def test_floats_survive_the_round_trip(store: StatsStore, version: str) -> None:
    # Redis keeps HINCRBYFLOAT results to 17 decimal places: absolute, not relative, precision.
    tiny, big = 1.2345678901234567e-7, 123456.78901234567
    store.apply(version, 0, [delta("a", 1, [0, 1], [tiny, big], [-tiny, -big])])
    w2, b = store.gather(version, ["a"], np.array([0, 1]))
    np.testing.assert_allclose(w2[0], [tiny, big], rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(b[0], [-tiny, -big], rtol=1e-15, atol=1e-16)


def test_redis_keys_follow_the_documented_layout(redis_url: str, version: str) -> None:
    store = RedisStatsStore.from_url(redis_url, timeout_s=2.0)
    store.apply(version, 2, [delta("item-9", 4, [7], [0.5], [0.25])])
    client = redis.Redis.from_url(redis_url)
    key = f"om:v:{version}:item:item-9"
    assert key == item_key(version, "item-9")
    assert client.type(key) == b"hash"
    assert client.hgetall(key) == {b"w2:7": b"0.5", b"b:7": b"0.25", b"off:2": b"4"}
    with pytest.raises(ValueError, match="item_id"):
        item_key(version, "bad{tag}")


def test_unreachable_redis_reports_not_ready() -> None:
    from tests.conftest import free_port

    store = RedisStatsStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    assert store.ping() is False
    with pytest.raises(redis.ConnectionError):
        store.gather("v", ["a"], np.array([0]))
