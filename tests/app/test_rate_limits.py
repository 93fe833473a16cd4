"""Feedback rate limits per user and per client: 429 with ``Retry-After`` naming the field,
nothing of a refused batch taken, and (on a real Redis) one limit shared by every replica."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from bench.services import Broker
from tests.app.conftest import real_settings, settings_for


def ask(client: TestClient, user: str) -> dict[str, Any]:
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def impressions(data: dict[str, Any], n: int, tag: str = "") -> list[dict[str, str]]:
    rid = data["request_id"]
    items = [i["item_id"] for i in data["items"]]
    return [
        {"event_id": f"{rid}-{tag}{k}", "request_id": rid, "item_id": items[k % len(items)], "type": "impression"}
        for k in range(n)
    ]


def send(client: TestClient, events: list[dict[str, str]], **headers: str) -> Any:
    return client.post("/v1/feedback", json={"events": events}, headers=headers)


def accepted(client: TestClient) -> float:
    text = client.get("/metrics").text
    lines = [
        ln for ln in text.splitlines() if ln.startswith("om_feedback_events_total{") and 'outcome="accepted"' in ln
    ]
    assert lines, "no accepted feedback counted: the metric's name or labels changed"
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


@pytest.fixture
def limited(bundle_dir: Path) -> Iterator[TestClient]:
    settings = settings_for(
        bundle_dir,
        feedback_user_rate=0.5,
        feedback_user_burst=6.0,
        feedback_client_rate=1.0,
        feedback_client_burst=30.0,
        client_address_header="X-Forwarded-For",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_user_over_the_limit_gets_429_with_retry_after_and_nothing_is_taken(limited: TestClient) -> None:
    a = ask(limited, "user-a")
    r = send(limited, impressions(a, 6), **{"X-Forwarded-For": "10.0.0.1"})
    assert r.status_code == 202 and r.json()["accepted"] == 6  # the whole burst
    before = accepted(limited)
    a2 = ask(limited, "user-a")
    r = send(limited, impressions(a2, 2), **{"X-Forwarded-For": "10.0.0.1"})
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["errors"][0]["field"] == "events.0.request_id" and "user 'user-a'" in body["detail"]
    assert before >= 6 and accepted(limited) == before  # the refused batch sent nothing
    # Another user from the same client is not limited by user-a's use.
    b = ask(limited, "user-b")
    assert send(limited, impressions(b, 3), **{"X-Forwarded-For": "10.0.0.1"}).status_code == 202


def test_a_client_over_the_limit_is_refused_and_a_forged_hop_does_not_escape_it(limited: TestClient) -> None:
    users = [ask(limited, f"user-{n}") for n in range(8)]
    for data in users[:6]:  # 6 users x 5 events: the client's burst of 30
        assert send(limited, impressions(data, 5), **{"X-Forwarded-For": "10.0.0.2"}).status_code == 202
    # The caller's own claim comes first; the proxy appends the real address last.
    r = send(limited, impressions(users[6], 1), **{"X-Forwarded-For": "1.2.3.4, 10.0.0.2"})
    assert r.status_code == 429 and r.json()["errors"][0]["field"] == "events"
    assert "client '10.0.0.2'" in r.json()["detail"]
    # Another client (another last hop) has its own limit.
    assert send(limited, impressions(users[7], 2), **{"X-Forwarded-For": "10.0.0.3"}).status_code == 202


def test_replicas_share_the_limit_through_redis(bundle_dir: Path, redis_url: str, broker: Broker) -> None:
    settings = real_settings(bundle_dir, redis_url, broker.bootstrap).model_copy(
        update={"feedback_user_rate": 0.2, "feedback_user_burst": 4.0}
    )
    user = f"user-shared-{id(settings)}"
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        data = ask(one, user)
        assert send(one, impressions(data, 4)).status_code == 202  # the whole burst, on replica one
        r = send(two, impressions(data, 1, tag="again-"))  # the same user, on replica two
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
