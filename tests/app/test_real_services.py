"""The closed loop and its failure modes against a real Redis and a real Kafka-protocol broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import Services, consumer_for, create_app, ensure_topics
from app.settings import Settings
from bench.services import Broker, RedisCluster, RedisServer, free_port
from tests.app.conftest import real_settings, without_calibration

CANDIDATES = [f"item-{n}" for n in range(30)]


@contextmanager
def running(settings: Settings, with_consumer: bool = True) -> Iterator[TestClient]:
    """The API, plus (as `onlinematch consume` would be) one consumer process's loop in a thread."""
    app = create_app(settings)
    with TestClient(app) as client:
        stop = threading.Event()
        thread = None
        if with_consumer:
            services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
            # As `onlinematch consume` does: the topics first, then the consumer (the app creates
            # them in the background, and a consumer may otherwise subscribe before they exist).
            ensure_topics(services.bus, settings)
            consumer = consumer_for(services)
            client.app.state.test_consumer = consumer  # type: ignore[attr-defined]  # for failure messages
            thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
            thread.start()
        try:
            yield client
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=15)


def ask(client: TestClient, user: str = "user-4", k: int = 30) -> dict[str, Any]:
    r = client.post("/v1/recommend", json={"user_id": user, "k": k, "candidates": CANDIDATES})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def score_of(data: dict[str, Any], item: str) -> float:
    return float(next(i["score"] for i in data["items"] if i["item_id"] == item))


def click(client: TestClient, data: dict[str, Any], item: str, n: int = 0) -> None:
    event = {
        "event_id": f"{data['request_id']}-{n}",
        "request_id": data["request_id"],
        "item_id": item,
        "type": "click",
    }
    r = client.post("/v1/feedback", json={"events": [event]})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1


def wait_until_learnt(client: TestClient, item: str, above: float, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        now = score_of(ask(client), item)
        if now > above + 0.05:
            return now
        if time.monotonic() >= deadline:
            consumer = getattr(client.app.state, "test_consumer", None)  # type: ignore[attr-defined]  # starlette app state
            seen = "no consumer" if consumer is None else f"consumer {consumer.stats}, assigned {consumer.assignment()}"
            raise AssertionError(f"{item} never rose above {above:.3f} (now {now:.3f}); {seen}")
        time.sleep(0.1)


@pytest.mark.parametrize("redis_kind", ["standalone", "cluster"])
def test_closed_loop_through_kafka_and_redis(
    bundle_dir: Path, broker: Broker, redis_kind: str, request: pytest.FixtureRequest
) -> None:
    if redis_kind == "standalone":
        settings = real_settings(bundle_dir, request.getfixturevalue("redis_url"), broker.bootstrap)
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        settings = real_settings(bundle_dir, cluster.url, broker.bootstrap).model_copy(
            update={"redis_cluster": True, "redis_wait_replicas": 1}
        )
    with running(settings) as client:
        without_calibration(client)
        first = ask(client)
        assert first["degraded"] is False
        item = first["items"][-1]["item_id"]
        before = score_of(first, item)
        click(client, first, item)
        wait_until_learnt(client, item, before)
        ready = client.get("/readyz").json()
        assert ready["ready"] is True and ready["degraded"] == []


def test_unreachable_broker_answers_503_and_recommendations_keep_working(bundle_dir: Path, redis_url: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with running(real_settings(bundle_dir, redis_url, dead), with_consumer=False) as client:
        data = ask(client)
        assert data["degraded"] is False and len(data["items"]) == 30
        event = {"event_id": "x1", "request_id": data["request_id"], "item_id": "item-1", "type": "click"}
        r = client.post("/v1/feedback", json={"events": [event]})
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["Retry-After"]) > 0
        assert "retry" in r.json()["detail"]
        assert ask(client)["degraded"] is False
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert any("broker" in reason for reason in ready.json()["degraded"])


def test_unreachable_redis_serves_priors_degraded(bundle_dir: Path, broker: Broker) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with running(real_settings(bundle_dir, dead, broker.bootstrap), with_consumer=False) as client:
        data = ask(client)
        assert data["degraded"] is True
        assert "statistics_unavailable" in data["degraded_reasons"]
        items = data["items"]
        assert len(items) == 30 and not any(i["explored"] for i in items)
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)  # greedy by prior
        assert all(i["score"] == pytest.approx(i["prior"]) for i in items)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["degraded"]
        assert 'om_degraded_responses_total{reason="statistics_unavailable"}' in client.get("/metrics").text


def test_feedback_accepted_while_redis_is_down_is_applied_when_it_returns(bundle_dir: Path, broker: Broker) -> None:
    redis = RedisServer()
    redis.start()
    try:
        with running(real_settings(bundle_dir, redis.url, broker.bootstrap)) as client:
            without_calibration(client)
            first = ask(client)
            item = first["items"][-1]["item_id"]
            before = score_of(first, item)
            redis.pause()
            assert ask(client)["degraded"] is True
            assert client.get("/readyz").json()["degraded"]
            # The broker acknowledges it, so it is accepted although Redis cannot be reached.
            click(client, first, item)
            time.sleep(1.0)  # the consumer is retrying its batch against the frozen Redis
            redis.resume()
            after = wait_until_learnt(client, item, before)
            assert after > before
            assert client.get("/readyz").json()["degraded"] == []
    finally:
        redis.cleanup()


def test_an_experiment_learns_and_counts_per_arm_in_redis_through_kafka(
    bundle_dir: Path, broker: Broker, redis_url: str
) -> None:
    """Each arm's clicks reach its own namespace in Redis through the broker, its counters read
    back per arm."""
    import redis as redis_client

    from streaming.events import arm_namespace
    from streaming.redis_store import stats_key
    from tests.app.conftest import auth

    settings = real_settings(bundle_dir, redis_url, broker.bootstrap)
    with running(settings) as client:
        without_calibration(client, "exp")
        body = {
            "name": "real",
            "control": "a",
            "arms": [{"name": "a", "share": 0.5, "settings": {"alpha": 0.0}}, {"name": "b", "share": 0.5}],
        }
        started = client.put("/v1/admin/surfaces/exp/experiment", json=body, headers=auth()).json()["experiment"]
        rounds = 60
        for n in range(rounds):
            r = client.post("/v1/recommend", json={"user_id": f"user-{n % 20}", "k": 3, "surface": "exp"}).json()
            assert not r["degraded"], r
            events = [
                {"event_id": f"{n}-{m}", "request_id": r["request_id"], "item_id": i["item_id"], "type": "click"}
                for m, i in enumerate(r["items"])
            ]
            assert client.post("/v1/feedback", json={"events": events}).status_code == 202
        deadline = time.monotonic() + 60
        while True:
            arms = client.get("/v1/admin/surfaces/exp/experiment", headers=auth()).json()["arms"]
            if sum(a["clicks"] for a in arms) == 3 * rounds and sum(a["requests_served"] for a in arms) == rounds:
                break
            assert time.monotonic() < deadline, arms
            time.sleep(0.2)
        assert all(a["requests_shown"] > 0 and a["clicks_per_request"] == 3.0 for a in arms), arms
        version = client.get("/readyz").json()["bundle"]
        raw = redis_client.Redis.from_url(redis_url)
        for arm in ("a", "b"):
            ns = arm_namespace(version, f"{started['id']}/{arm}")
            keys = list(raw.scan_iter(match=f"om:v:{ns}:stats:*", count=1000))
            assert keys, ns
            assert stats_key(ns, keys[0].decode().split("{")[1].rstrip("}")) == keys[0].decode()
