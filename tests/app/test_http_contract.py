"""The HTTP contract on embedded defaults: shapes, validation that names the field, admin auth."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from streaming.bus import Message
from streaming.events import FeedbackEvent
from tests.app.conftest import without_calibration

AUTH = {"Authorization": "Bearer test-operator-token"}


def recommend(client: TestClient, **body: object) -> dict[str, Any]:
    r = client.post("/v1/recommend", json={"user_id": "user-1", **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_recommend_returns_k_distinct_items_with_flags(client: TestClient) -> None:
    data = recommend(client, k=7)
    items = data["items"]
    assert isinstance(items, list) and len(items) == 7
    assert len({i["item_id"] for i in items}) == 7
    assert all(isinstance(i["explored"], bool) and 0 <= i["prior"] <= 1 for i in items)
    assert data["model_version"] == "v-test-1" and data["degraded"] is False
    assert isinstance(data["request_id"], str) and len(data["request_id"]) == 32


def test_caller_candidates_and_exclusions_are_honoured(client: TestClient) -> None:
    data = recommend(client, k=3, candidates=["item-1", "item-2", "item-3", "brand-new-item"], exclude=["item-2"])
    ids = {i["item_id"] for i in data["items"]}
    assert ids <= {"item-1", "item-3", "brand-new-item"} and len(ids) == 3


def test_unknown_candidates_get_a_modest_prior_and_are_counted(client: TestClient) -> None:
    without_calibration(client)  # compare raw priors: the calibration maps them monotonically
    user = "someone-never-seen"
    pool = recommend(client, k=100, user_id=user, candidates=[f"item-{n}" for n in range(100)])["items"]
    weakest = [i["item_id"] for i in sorted(pool, key=lambda i: i["prior"])[:5]]
    data = recommend(client, k=6, user_id=user, candidates=["typo-item", *weakest])
    assert data["unknown_candidates"] == 1
    priors = {i["item_id"]: i["prior"] for i in data["items"]}
    # Round 1 gave an unknown id the bundle default, above these items' priors.
    assert priors["typo-item"] == pytest.approx(sorted(priors[i] for i in weakest)[2])
    assert recommend(client, k=3, candidates=weakest)["unknown_candidates"] == 0
    metrics = client.get("/metrics").text
    assert 'om_unknown_candidates_total{surface="default"} 1.0' in metrics


def test_unknown_and_cold_users_are_served(client: TestClient) -> None:
    data = recommend(client, k=5, user_id="someone-never-seen")
    assert len(data["items"]) == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "k": 0}, "k"),
        ({"user_id": "u", "k": 101}, "k"),
        ({"user_id": "u", "candidates": [f"i{n}" for n in range(10_001)]}, "candidates"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 257}, "user_id"),
        ({"user_id": "a{b}"}, "user_id"),
        ({"user_id": "u", "candidates": ["~om:calibration:default"]}, "candidates.0"),
        ({"user_id": "u", "candidates": ["ok", ""]}, "candidates.1"),
        ({"user_id": "u", "user_features": {"age": float("nan")}}, "user_features.age"),
        ({"user_id": "u", "surface": "bad surface"}, "surface"),
        ({"user_id": "u", "surprise": 1}, "surprise"),
        ({}, "user_id"),
    ],
)
def test_bad_recommend_requests_name_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/recommend", content=_json(body), headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)  # allows NaN on purpose: clients do send it


def event(n: int = 0, **overrides: object) -> dict[str, Any]:
    return {"event_id": f"e{n}", "request_id": "r", "item_id": "item-1", "type": "click", **overrides}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [event(n) for n in range(1001)]}, "events"),
        ({"events": []}, "events"),
        ({"events": [event(type="purchase")]}, "events.0.type"),
        ({"events": [event(value=float("inf"))]}, "events.0.value"),
        ({"events": [event(), event(1, item_id="")]}, "events.1.item_id"),
        ({"events": [event(item_id="~om:calibration:default")]}, "events.0.item_id"),
        ({"events": [event(position=-1)]}, "events.0.position"),
    ],
)
def test_bad_feedback_names_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/feedback", content=_json(body), headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]


def test_feedback_accepts_counts_duplicates_and_rejects_unknown_requests(client: TestClient) -> None:
    rec = recommend(client, k=2)
    rid, item = rec["request_id"], rec["items"][0]["item_id"]
    events = [
        {"event_id": "a", "request_id": rid, "item_id": item, "type": "impression"},
        {"event_id": "a", "request_id": rid, "item_id": item, "type": "impression"},
        {"event_id": "b", "request_id": rid, "item_id": item, "type": "click"},
        {"event_id": "c", "request_id": "no-such-request", "item_id": item, "type": "click"},
    ]
    r = client.post("/v1/feedback", json={"events": events})
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": [{"index": 3, "event_id": "c", "reason": "unknown or expired request_id"}],
    }


def test_feedback_moves_the_next_scores(client: TestClient) -> None:
    without_calibration(client)
    rec = recommend(client, k=3, user_id="user-5", candidates=["item-10", "item-11", "item-12"])
    rid = rec["request_id"]
    before = {i["item_id"]: i["score"] for i in rec["items"]}
    events = [{"event_id": f"c{n}", "request_id": rid, "item_id": "item-11", "type": "click"} for n in range(1)]
    assert client.post("/v1/feedback", json={"events": events}).status_code == 202
    deadline = time.monotonic() + 5
    while True:
        after = recommend(client, k=3, user_id="user-5", candidates=["item-10", "item-11", "item-12"])
        scores = {i["item_id"]: i for i in after["items"]}
        item = scores["item-11"]
        mean_now = item["score"] if not item["explored"] else None
        if mean_now is not None and mean_now > before["item-11"] + 0.05:
            break
        assert time.monotonic() < deadline, "a click should raise the item's mean within a second or so"
        time.sleep(0.05)


def test_admin_requires_the_operator_token(client: TestClient) -> None:
    assert client.get("/v1/admin/surfaces/home").status_code == 401
    assert client.get("/v1/admin/surfaces/home", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.put("/v1/admin/surfaces/home", json={"alpha": 5.0})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/admin/surfaces/home", headers=AUTH).json()["alpha"] == 0.1


def test_admin_edit_takes_effect_on_the_next_request_without_reset(client: TestClient) -> None:
    candidates = [f"item-{n}" for n in range(40)]
    ask = {"k": 5, "surface": "home", "user_id": "user-9", "candidates": candidates}
    # Learn something first: a click on one item.
    rec = recommend(client, **ask)
    first = rec["items"][0]["item_id"]
    click = {"event_id": "adm-1", "request_id": rec["request_id"], "item_id": first, "type": "click"}
    assert client.post("/v1/feedback", json={"events": [click]}).status_code == 202
    deadline = time.monotonic() + 5
    while (learnt := _mean(client, ask, first)) <= rec["items"][0]["prior"] + 0.05:
        assert time.monotonic() < deadline, "the click should be learnt"
        time.sleep(0.05)

    # Exploration on every request, filled at random: the very next request explores.
    r = client.put(
        "/v1/admin/surfaces/home",
        json={"policy": "epsilon_greedy", "epsilon": 1.0, "explore_traffic": 1.0, "explore_slots": 3},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["explore_traffic"] == 1.0
    assert any(i["explored"] for i in recommend(client, **ask)["items"])

    # Back to Diag-LinUCB with another alpha: what was learnt is still there.
    r = client.put(
        "/v1/admin/surfaces/home", json={"policy": "diag_linucb", "alpha": 3.0, "explore_traffic": 0.0}, headers=AUTH
    )
    assert r.status_code == 200
    assert _mean(client, ask, first) == pytest.approx(learnt)

    bad = client.put("/v1/admin/surfaces/home", json={"explore_traffic": 2.0}, headers=AUTH)
    assert bad.status_code == 422 and "explore_traffic" in bad.json()["detail"]
    assert client.get("/v1/admin/surfaces/home", headers=AUTH).json()["explore_traffic"] == 0.0
    assert client.put("/v1/admin/surfaces/home", json={"policy": "linucb"}, headers=AUTH).status_code == 422


def _mean(client: TestClient, ask: dict[str, Any], item: str) -> float:
    """The item's score on a request with no exploration (the surface must have explore_traffic 0)."""
    client.put("/v1/admin/surfaces/home", json={"explore_traffic": 0.0}, headers=AUTH)
    rec = recommend(client, **{**ask, "k": 40})
    scores = {i["item_id"]: i["score"] for i in rec["items"]}
    return float(scores[item])


def test_placeholder_token_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="OPERATOR_TOKEN"):
        Settings(environment="production")
    assert Settings(environment="production", operator_token="s3cret").environment == "production"
    # The editor token is optional: empty (as the deploy files pass it unset) means none.
    assert Settings(editor_token="").editor_token is None
    with pytest.raises(ValueError, match="EDITOR_TOKEN"):
        Settings(editor_token="change-me")


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["bundle"] == "v-test-1" and ready["degraded"] == []
    recommend(client, k=2)
    text = client.get("/metrics").text
    assert 'om_http_requests_total{route="/v1/recommend",status="200"}' in text
    assert 'om_bundle_info{version="v-test-1"} 1.0' in text


def test_serving_never_imports_torch(bundle_dir: Path) -> None:
    # A fresh interpreter: other tests in this process (the offline job's) do import torch.
    import subprocess

    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.main import create_app\n"
        "from tests.app.conftest import settings_for\n"
        "from pathlib import Path\n"
        f"with TestClient(create_app(settings_for(Path({str(bundle_dir)!r})))) as c:\n"
        "    assert c.post('/v1/recommend', json={'user_id': 'u', 'k': 2}).status_code == 200\n"
        "assert 'torch' not in sys.modules, 'serving imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_exploration_budget_is_a_share_of_slots() -> None:
    from app.dashboard import exploration_budget
    from app.surfaces import SurfaceConfig

    config = SurfaceConfig(explore_traffic=0.5, explore_slots=2)
    # 10 requests of 4 slots: half the traffic may explore 2 of 4 slots -> 0.25 of all slots.
    assert exploration_budget(config, [40, 0, 10], [10, 0, 10]) == [0.25, None, 0.5]


def test_stats_endpoint_needs_the_token_and_reports_the_hour(client: TestClient) -> None:
    assert client.get("/v1/admin/stats").status_code == 401
    recommend(client, k=3, surface="stats-check")
    deadline = time.monotonic() + 30
    while True:  # the counters flush in the background, each second
        body = client.get("/v1/admin/stats", headers=AUTH).json()
        series = body["surfaces"].get("stats-check", {}).get("series")
        if series is not None and sum(series["requests_per_s"]) > 0:
            break
        assert time.monotonic() < deadline, "the request was never counted"
        time.sleep(0.1)
    assert len(body["minutes"]) == 60 and body["bundle"]["version"] == "v-test-1"
    # Every minute with requests has a budget. Not "the last minute": the request may have been
    # counted in the minute before the read (a CI run crossed the boundary between the two).
    busy = [budget for budget, rate in zip(series["exploration_budget"], series["requests_per_s"], strict=True) if rate]
    assert busy and all(budget is not None for budget in busy)
    assert all(len(v) == 60 for k, v in series.items() if isinstance(v, list))


def test_every_log_line_of_a_request_carries_its_request_id(
    bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from app.main import create_app
    from tests.app.conftest import settings_for

    with TestClient(create_app(settings_for(bundle_dir, log_level="debug"))) as c:
        capsys.readouterr()
        r = c.post("/v1/recommend", json={"user_id": "user-2", "k": 2}, headers={"X-Request-ID": "trace-abc"})
        assert r.headers["X-Request-ID"] == "trace-abc"
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "trace-abc"]
    events = {line["event"] for line in mine}
    assert {"recommendation", "http_request"} <= events, lines
    assert all(line.get("request_id") == "trace-abc" for line in lines if line["event"] in events)


def test_a_new_surface_learns_its_click_rate_before_its_items(client: TestClient) -> None:
    # Nobody clicks: the calibrated priors fall from the offline scale to the surface's rate,
    # and only once the calibration has enough exposure do stored contexts let items learn.
    services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
    candidates = [f"item-{n}" for n in range(40)]
    first = recommend(client, k=10, user_id="user-7", candidates=candidates)
    raw_top = max(i["prior"] for i in first["items"])
    learn_flags = []
    for n in range(60):
        rec = recommend(client, k=10, user_id=f"user-{n % 50}", candidates=candidates)
        learn_flags.append(services.store.get_contexts([rec["request_id"]])[rec["request_id"]].learn)
        events = [
            {"event_id": f"{rec['request_id']}-{i['item_id']}", "request_id": rec["request_id"],
             "item_id": i["item_id"], "type": "impression"}
            for i in rec["items"]
        ]  # fmt: skip
        assert client.post("/v1/feedback", json={"events": events}).status_code == 202
        time.sleep(0.02)  # the embedded consumer applies within milliseconds; calibration refreshes each second
    deadline = time.monotonic() + 5
    while True:
        last = recommend(client, k=10, user_id="user-7", candidates=candidates)
        ctx = services.store.get_contexts([last["request_id"]])[last["request_id"]]
        if ctx.learn and max(i["prior"] for i in last["items"]) < raw_top / 3:
            break
        assert time.monotonic() < deadline, (ctx.learn, raw_top, last["items"][0])
        time.sleep(0.2)
    assert not learn_flags[0]  # the first requests of a surface teach the calibration only
    assert set(ctx.positions.values()) == set(range(10)) and ctx.exam[last["items"][0]["item_id"]] == 1.0
    assert ctx.raw and all(0.0 < ctx.exam[i] <= 1.0 for i in ctx.items)


def _reward(client: TestClient, value: float, surface: str = "default", ts: float | None = None) -> httpx.Response:
    rec = recommend(client, k=1, surface=surface, candidates=["item-1", "item-2"])
    item = rec["items"][0]["item_id"]
    events = [
        {"event_id": f"{rec['request_id']}-i", "request_id": rec["request_id"], "item_id": item, "type": "impression"},
        {"event_id": f"{rec['request_id']}-r", "request_id": rec["request_id"], "item_id": item, "type": "reward",
         "value": value, **({"ts": ts} if ts is not None else {})},
    ]  # fmt: skip
    r: httpx.Response = client.post("/v1/feedback", json={"events": events})
    return r


def test_a_reward_outside_the_surface_bounds_is_refused_whole_and_names_the_field(client: TestClient) -> None:
    """Round 1: one `{"type": "reward", "value": 1e12}` made an item score 3.7e11 for a cluster."""
    for value in (1e12, -0.5, 1.0001):
        r = _reward(client, value)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        assert [e["field"] for e in r.json()["errors"]] == ["events.1.value"]  # and the impression not taken
    assert _reward(client, 1.0).status_code == 202
    # A surface that pays in [0, 5] takes 3; its bounds are an operator's setting.
    assert client.put("/v1/admin/surfaces/shop", json={"reward_max": 5.0}, headers=AUTH).status_code == 200
    assert _reward(client, 3.0, surface="shop").status_code == 202
    assert _reward(client, 6.0, surface="shop").status_code == 422
    r = client.put("/v1/admin/surfaces/shop", json={"reward_min": 9.0}, headers=AUTH)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["reward_min"]


def test_an_event_time_outside_the_request_window_is_replaced_by_now(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
    sent: list[FeedbackEvent] = []
    original = services.producer.send_and_wait

    def spy(messages: list[Message], timeout_s: float) -> None:
        sent.extend(FeedbackEvent.decode(m.value) for m in messages)
        original(messages, timeout_s)

    services.producer.send_and_wait = spy
    before = time.time()
    for claimed in (1e300, -1e300, 1.0):
        sent.clear()
        assert _reward(client, 0.5, ts=claimed).status_code == 202
        (reward,) = [e for e in sent if e.type == "reward"]
        assert before <= reward.ts <= time.time()
    sent.clear()
    true = time.time()
    assert _reward(client, 0.5, ts=true).status_code == 202
    assert next(e.ts for e in sent if e.type == "reward") == true  # a true time is kept as sent


def test_a_405_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.request("TRACE", "/v1/items/item-1")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "PUT", "DELETE"}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"user_id": "u", "k": True}, "k"), ({"user_id": "u", "k": "5"}, "k"), ({"user_id": "u", "k": 5.5}, "k")],
)
def test_numbers_are_json_numbers_not_bools_or_strings(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == [field]
    assert client.post("/v1/recommend", json={"user_id": "u", "k": 5.0}).status_code == 200  # an integer in JSON


def test_a_pool_prior_too_weak_to_compute_with_is_refused(client: TestClient) -> None:
    # Found by schemathesis: lam_pool 5e-324 made every score infinite and /v1/recommend a 500.
    r = client.put("/v1/admin/surfaces/tiny", json={"lam_pool": 5e-324}, headers=AUTH)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lam_pool"
    assert client.put("/v1/admin/surfaces/tiny", json={"lam_pool": 1e-3}, headers=AUTH).status_code == 200
    assert client.post("/v1/recommend", json={"user_id": "u", "surface": "tiny"}).status_code == 200


def test_a_failing_store_is_skipped_for_the_cool_off_then_probed_again(bundle_dir: Path) -> None:
    """Recommendations run on the event loop (app/routes.py): after a store failure, requests
    within ``store_cool_off_s`` must not call the store at all (a hanging Redis would otherwise
    hold every request for a timeout), and the first one after it must try again."""
    from app.main import create_app
    from streaming.stores import StoreUnavailable
    from tests.app.conftest import settings_for

    with TestClient(create_app(settings_for(bundle_dir, store_cool_off_s=0.5))) as c:
        store = c.app.state.services.store  # type: ignore[attr-defined]  # FastAPI types app as ASGIApp
        calls: list[str] = []
        real_gather = store.gather_live

        def gather(*args: Any) -> Any:
            calls.append("gather")
            if len(calls) == 1:
                raise StoreUnavailable("down")
            return real_gather(*args)

        store.gather_live = gather
        first = recommend(c, user_id="u1", k=3)
        assert first["degraded"] and "statistics_unavailable" in first["degraded_reasons"]
        skipped = recommend(c, user_id="u1", k=3)
        assert skipped["degraded"] and "context_not_stored" in skipped["degraded_reasons"]
        assert calls == ["gather"]  # the second request did not touch the store
        time.sleep(0.6)
        again = recommend(c, user_id="u1", k=3)
        assert not again["degraded"], again
        assert calls == ["gather", "gather"]
