"""``onlinematch rebuild`` end to end: traffic over HTTP on a real Redis and a real broker, the
service stopped, then the statistics replayed from the topics (beside the live namespace and
into an empty Redis) and compared with the live ones; the new Redis then takes feedback on a
request served before the "loss"."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from app.cli import main
from app.main import Services, consumer_for, create_app
from app.settings import Settings
from bench.services import Broker, RedisServer, ServiceUnavailable
from tests.app.conftest import real_settings
from tests.app.test_real_services import CANDIDATES
from tests.conftest import unavailable


@pytest.fixture
def empty_redis() -> Iterator[str]:
    try:
        server = RedisServer().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield server.url
    server.cleanup()


def traffic(client: TestClient, n_requests: int, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """Recommend, then report impressions, some clicks and some duplicates, as clients do.
    Returns the events accepted and the last answer."""
    accepted = 0
    data: dict[str, Any] = {}
    for n in range(n_requests):
        r = client.post("/v1/recommend", json={"user_id": f"user-{n % 9}", "k": 6, "candidates": CANDIDATES})
        assert r.status_code == 200, r.text
        data = r.json()
        events = []
        for slot, item in enumerate(data["items"]):
            rid, iid = data["request_id"], item["item_id"]
            events.append({"event_id": f"{rid}-{slot}-i", "request_id": rid, "item_id": iid, "type": "impression"})
            if rng.random() < 0.25 / (slot + 1):
                events.append({"event_id": f"{rid}-{slot}-c", "request_id": rid, "item_id": iid, "type": "click"})
                if rng.random() < 0.3:  # a client retry under a new id: credited once all the same
                    events.append({"event_id": f"{rid}-{slot}-c2", "request_id": rid, "item_id": iid, "type": "click"})
        r = client.post("/v1/feedback", json={"events": events})
        assert r.status_code == 202, r.text
        accepted += int(r.json()["accepted"])
    return accepted, data


def environment(monkeypatch: pytest.MonkeyPatch, s: Settings) -> None:
    assert s.redis_url and s.kafka_bootstrap_servers
    for name, value in {
        "REDIS_URL": s.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "DECISIONS_TOPIC": s.decisions_topic,
        "FEEDBACK_TOPIC": s.feedback_topic,
        "DEAD_LETTER_TOPIC": s.dead_letter_topic,
    }.items():
        monkeypatch.setenv(name, value)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["rebuild", *args])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else {}), err


def test_rebuild_from_the_topics_equals_the_live_statistics(
    bundle_dir: Path,
    redis_url: str,
    broker: Broker,
    empty_redis: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The bundle's version is every test's: other tests' statistics for it would be "live" too.
    redis.Redis.from_url(redis_url).flushdb()
    settings = real_settings(bundle_dir, redis_url, broker.bootstrap)
    with TestClient(create_app(settings)) as client:
        accepted, last = traffic(client, 50, np.random.default_rng(0))
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        consumer = consumer_for(services)
        deadline = time.monotonic() + 60
        while consumer.stats.events < accepted:
            assert time.monotonic() < deadline, f"consumed {consumer.stats.events} of {accepted}"
            consumer.run_once()
        consumer.close()
        assert consumer.stats.counts["credited_click"] > 0 and consumer.stats.counts["duplicate"] > 0
    # The service is stopped (its decision log flushed): the procedure after a loss.
    environment(monkeypatch, settings)

    code, _, err = run_cli(capsys)
    assert code == 2 and "--suffix" in err and "--into" in err

    code, out, err = run_cli(capsys, "--suffix=-rb", "--verify")
    assert code == 0, (err, out)
    assert out["verified"] is True and out["max_relative_difference"] <= 1e-9
    assert out["counts"]["credited_click"] == consumer.stats.counts["credited_click"]
    assert out["items"] >= 6 and out["contexts_restored"] == 0

    code, _, err = run_cli(capsys, "--suffix=-rb")
    assert code == 2 and "already holds" in err  # a second run would double nothing, but says so

    code, out, err = run_cli(capsys, "--into", empty_redis, "--verify")
    assert code == 0, (err, out)
    assert out["verified"] is True and out["contexts_restored"] >= 50

    # The new Redis as the service's store: feedback on a request served before the loss joins.
    moved = settings.model_copy(update={"redis_url": empty_redis})
    with TestClient(create_app(moved)) as client:
        item = last["items"][-1]["item_id"]
        event = {"event_id": "after-loss", "request_id": last["request_id"], "item_id": item, "type": "click"}
        r = client.post("/v1/feedback", json={"events": [event]})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
