"""Experiments per surface over HTTP on the embedded defaults: arms by a stable hash, each
learning in its own namespace, counted apart, promoted or ended through the audit log; and the
bad inputs an editor can send."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.auth import digest
from app.experiments import Experiment, arm_results, start
from app.main import create_app
from app.surfaces import SurfaceConfig
from streaming.events import arm_namespace
from streaming.opstats import coin_field
from streaming.stores import ItemDelta, MemoryStore, retire_versions
from tests.app.conftest import auth, settings_for

ARMS = {
    "name": "alpha0",
    "control": "control",
    "arms": [
        {"name": "control", "share": 0.3, "settings": {"alpha": 0.0}},
        {"name": "explore", "share": 0.7, "settings": {"alpha": 0.5, "explore_traffic": 0.5}},
    ],
}


def start_experiment(client: TestClient, surface: str, body: dict[str, Any] = ARMS) -> dict[str, Any]:
    r = client.put(f"/v1/admin/surfaces/{surface}/experiment", json=body, headers=auth())
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def serve_and_click(client: TestClient, surface: str, users: int, rounds: int, seed: int = 0) -> dict[str, int]:
    """Requests with impressions of every slot and a click on each slot with probability 0.3;
    returns the clicks by the arm each response's context names."""
    rng = np.random.default_rng(seed)
    clicks: Counter[str] = Counter()
    for n in range(rounds):
        user = f"user-{n % users}"
        rec = client.post("/v1/recommend", json={"user_id": user, "k": 3, "surface": surface}).json()
        assert not rec["degraded"], rec
        events = []
        for m, item in enumerate(rec["items"]):
            base = {"request_id": rec["request_id"], "item_id": item["item_id"], "ts": time.time()}
            events.append({**base, "event_id": f"{surface}-{n}-{m}-i", "type": "impression"})
            if rng.random() < 0.3:
                events.append({**base, "event_id": f"{surface}-{n}-{m}-c", "type": "click"})
                clicks[user] += 1
        assert client.post("/v1/feedback", json={"events": events}).status_code == 202
    return dict(clicks)


def wait_for(client: TestClient, surface: str, served: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:  # the consumer and the counter flush run in the background
        view: dict[str, Any] = client.get(f"/v1/admin/surfaces/{surface}/experiment", headers=auth()).json()
        arms = view["arms"]
        if sum(a["requests_shown"] for a in arms) == served == sum(a["requests_served"] for a in arms):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.1)


def test_users_keep_their_arm_and_each_arm_learns_and_counts_apart(client: TestClient) -> None:
    surface = "exp"
    client.put(f"/v1/admin/surfaces/{surface}", json={"calibrate": False}, headers=auth())
    started = start_experiment(client, surface)
    exp = Experiment.model_validate(started["experiment"])
    assert exp.running and [a.name for a in exp.arms] == ["control", "explore"]
    # Each arm's settings are the surface's at the start with its overrides.
    assert exp.arms[0].config.alpha == 0.0 and exp.arms[1].config.explore_traffic == 0.5
    assert not exp.arms[0].config.calibrate and not exp.arms[1].config.calibrate

    users, rounds = 40, 200
    clicks = serve_and_click(client, surface, users, rounds)
    view = wait_for(client, surface, rounds)
    by_arm = {a["name"]: a for a in view["arms"]}
    # Hand counts: every user's requests went to the arm her hash names, and its clicks with them.
    expected_req: Counter[str] = Counter()
    expected_clk: Counter[str] = Counter()
    for n in range(rounds):
        arm = exp.assign(f"user-{n % users}")
        assert arm is not None
        expected_req[arm.name] += 1
    for user, c in clicks.items():
        arm = exp.assign(user)
        assert arm is not None
        expected_clk[arm.name] += c
    for name in ("control", "explore"):
        assert by_arm[name]["requests_served"] == expected_req[name]
        assert by_arm[name]["requests_shown"] == expected_req[name]
        assert by_arm[name]["clicks"] == expected_clk[name]
        assert by_arm[name]["impressions"] == 3 * expected_req[name]
        assert by_arm[name]["clicks_per_request"] == pytest.approx(expected_clk[name] / expected_req[name], abs=1e-5)
        assert by_arm[name]["low"] < by_arm[name]["clicks_per_request"] < by_arm[name]["high"]
    assert by_arm["control"]["control"] and by_arm["control"]["lift"] is None
    assert by_arm["explore"]["verdict"] and by_arm["explore"]["lift_low"] < by_arm["explore"]["lift_high"]

    # Statistics went to the arms' namespaces, none to the bundle's own.
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp
    version = svc.bundles.current.version
    items = list(svc.bundles.current.item_index)
    learnt = {}
    for ns in (version, *(arm_namespace(version, exp.key(a)) for a in exp.arms)):
        w2, _ = svc.store.gather(ns, items, np.arange(17))
        learnt[ns] = float(w2.sum())
    assert learnt[version] == 0.0
    assert all(v > 0 for ns, v in learnt.items() if ns != version)
    # The surface's own counters hold both arms' traffic.
    stats = client.get("/v1/admin/stats", headers=auth()).json()
    assert (
        sum(stats["surfaces"][surface]["series"]["impressions_exploited"])
        + sum(stats["surfaces"][surface]["series"]["impressions_explored"])
        == 3 * rounds
    )
    assert not any("@" in name for name in stats["surfaces"])
    assert stats["surfaces"][surface]["experiment"]["experiment"]["id"] == exp.id


def test_promote_gives_the_surface_the_arms_settings_ends_the_experiment_and_is_audited(client: TestClient) -> None:
    surface = "promo"
    start_experiment(client, surface)
    r = client.post(f"/v1/admin/surfaces/{surface}/experiment/promote", json={"arm": "explore"}, headers=auth())
    assert r.status_code == 200, r.text
    exp = r.json()["experiment"]
    assert exp["outcome"] == "promoted explore" and exp["ended_by"] == "operator" and exp["ended_at"]
    config = client.get(f"/v1/admin/surfaces/{surface}", headers=auth()).json()
    assert config["alpha"] == 0.5 and config["explore_traffic"] == 0.5
    # Served outside any experiment again.
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp
    assert svc.surfaces.arm(surface, "user-1") is None
    changes = client.get("/v1/admin/stats", headers=auth()).json()["changes"]
    actions = [c.get("experiment") for c in changes if c["surface"] == surface]
    # Newest first: the experiment's end, the settings it gave the surface, its start.
    assert actions[:3] == ["promoted explore", None, "started"]
    assert any(c["surface"] == surface and c["new"].get("alpha") == 0.5 for c in changes if "experiment" not in c)
    # Nothing left to promote or end; a new one may start, with a new id (new namespaces).
    assert client.post(f"/v1/admin/surfaces/{surface}/experiment/end", headers=auth()).status_code == 404
    again = start_experiment(client, surface)
    assert again["experiment"]["id"] != exp["id"]
    assert (
        client.post(f"/v1/admin/surfaces/{surface}/experiment/end", headers=auth()).json()["experiment"]["outcome"]
        == "ended"
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], "control": "a"}, "arms.1.name"),
        ({"control": "nobody"}, "control"),
        ({"arms": [{"name": "control", "share": 0.6}, {"name": "explore", "share": 0.6}]}, "arms"),
        ({"arms": [{"name": "control", "share": 0.0}, {"name": "explore", "share": 0.5}]}, "arms.0.share"),
        ({"arms": [{"name": "control", "share": 0.5}]}, "arms"),
        ({"arms": [{"name": "Control!", "share": 0.5}, {"name": "x", "share": 0.5}]}, "arms.0.name"),
        ({"arms": [{"name": "control", "share": 0.5, "settings": {"alpha": -1}}, {"name": "x", "share": 0.5}]},
         "arms.0.settings.alpha"),
        ({"arms": [{"name": "control", "share": 0.5, "settings": {"nope": 1}}, {"name": "x", "share": 0.5}]},
         "arms.0.settings.nope"),
        ({"arms": [{"name": "control", "share": 0.5}, {"name": "x", "share": 0.5, "settings": {"reward_min": 5.0}}]},
         "arms.1.settings.reward_min"),
        ({"name": ""}, "name"),
    ],
)  # fmt: skip
def test_a_bad_experiment_is_refused_naming_the_field(client: TestClient, change: dict[str, Any], field: str) -> None:
    r = client.put("/v1/admin/surfaces/bad/experiment", json={**ARMS, **change}, headers=auth())
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert client.get("/v1/admin/surfaces/bad/experiment", headers=auth()).json()["experiment"] is None


def test_one_experiment_at_a_time_and_promote_names_a_real_arm(client: TestClient) -> None:
    start_experiment(client, "busy")
    r = client.put("/v1/admin/surfaces/busy/experiment", json=ARMS, headers=auth())
    assert r.status_code == 409 and "busy" in r.json()["detail"]
    r = client.post("/v1/admin/surfaces/busy/experiment/promote", json={"arm": "other"}, headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "arm"
    assert (
        client.post("/v1/admin/surfaces/idle/experiment/promote", json={"arm": "x"}, headers=auth()).status_code == 404
    )


def test_a_viewer_reads_experiments_but_cannot_change_them(tmp_path: Path, bundle_dir: Path) -> None:
    path = tmp_path / "operators.json"
    path.write_bytes(orjson.dumps({"bob": {"sha256": digest("bob-token"), "role": "viewer"}}))
    bob = {"Authorization": "Bearer bob-token"}
    with TestClient(create_app(settings_for(bundle_dir, operators_file=path))) as c:
        assert c.put("/v1/admin/surfaces/s/experiment", json=ARMS, headers=bob).status_code == 403
        assert c.put("/v1/admin/surfaces/s/experiment", json=ARMS).status_code == 401
        start_experiment(c, "s")
        assert c.get("/v1/admin/surfaces/s/experiment", headers=bob).status_code == 200
        assert (
            c.post("/v1/admin/surfaces/s/experiment/promote", json={"arm": "control"}, headers=bob).status_code == 403
        )
        assert c.post("/v1/admin/surfaces/s/experiment/end", headers=bob).status_code == 403
        assert c.get("/v1/admin/surfaces/s/experiment", headers=bob).json()["experiment"]["ended_at"] is None


def test_assignment_is_stable_follows_the_shares_and_redraws_for_a_new_experiment() -> None:
    arms: list[tuple[str, float, dict[str, Any]]] = [("a", 0.2, {}), ("b", 0.5, {}), ("c", 0.2, {})]
    one = start("home", "x", "a", arms, SurfaceConfig(), "ops")
    two = start("home", "x", "a", arms, SurfaceConfig(), "ops")
    users = [f"user-{n}" for n in range(20_000)]
    first = [one.assign(u) for u in users]
    assert [one.assign(u) for u in users] == first
    counts = Counter(a.name if a is not None else None for a in first)
    for name, share in (("a", 0.2), ("b", 0.5), ("c", 0.2), (None, 0.1)):
        assert abs(counts[name] / len(users) - share) < 0.015, counts
    # Another experiment draws users afresh: about half of b's users land in b again.
    in_b = [u for u, a in zip(users, first, strict=True) if a is not None and a.name == "b"]
    again = [two.assign(u) for u in in_b]
    assert 0.46 < sum(a is not None and a.name == "b" for a in again) / len(in_b) < 0.54


def test_running_figures_are_exact_at_each_minute_and_the_lift_compares_with_control() -> None:
    exp = start("home", "x", "ctl", [("ctl", 0.5, {}), ("arm", 0.5, {})], SurfaceConfig(), "ops")

    def row(n: int, c: int, c2: int) -> dict[str, int]:
        return {coin_field(False, "req", 0.1): n, coin_field(False, "clk", 0.1): c, coin_field(False, "clk2", 0.1): c2}

    window = {"ctl": [row(100, 30, 40), row(100, 30, 40)], "arm": [row(100, 60, 90), row(100, 60, 90)]}
    # The experiment began before the window: the totals hold 100 more requests each.
    totals = {"ctl": row(300, 90, 120), "arm": row(300, 180, 270)}
    ctl, arm = arm_results(exp, totals, window)
    assert ctl.requests_shown == 300 and ctl.clicks_per_request == pytest.approx(0.3)
    assert ctl.series["clicks_per_request"] == pytest.approx([0.3, 0.3])
    assert arm.diff == pytest.approx(0.3) and arm.lift == pytest.approx(1.0)
    assert arm.significant and arm.verdict is not None and "significant" in arm.verdict
    assert arm.lift_low is not None and arm.lift_low > 0
    assert arm.series["lift"] == pytest.approx([1.0, 1.0])


def test_an_ended_experiments_namespaces_are_retired_like_an_old_version() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])

    arm_ns = arm_namespace("v1", "x-abc/control")
    for ns in ("v1", arm_ns):
        store.apply(ns, 0, [ItemDelta("a", 0, 0, np.array([0]), np.array([1.0]), np.array([0.5]), {})], 60.0)
    # Both reported while the experiment ran; afterwards only the bundle's version is.
    store.heartbeat("v1", now[0])
    store.heartbeat(arm_ns, now[0])
    now[0] += 100_000
    store.heartbeat("v1", now[0])
    retired = retire_versions(store, now[0], grace_s=3600.0, lease_s=30.0)
    assert list(retired) == [arm_ns]
    assert store.gather(arm_ns, ["a"], np.array([0]))[0].tolist() == [[0.0]]
    assert store.gather("v1", ["a"], np.array([0]))[0].tolist() == [[1.0]]


def test_a_replica_reports_an_arms_namespace_while_it_serves_it_and_then_stops(client: TestClient) -> None:
    """The lease side of retirement: an arm's namespace is reported on first use and renewed by
    the heartbeat while used; once unused for a lease (the experiment ended), no longer."""
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp
    ns = arm_namespace(svc.bundles.current.version, "x-000000/a")
    assert svc.bundles.reported_namespace(ns)
    first = svc.store.serving_versions()[ns]
    time.sleep(0.01)
    svc.bundles.report()
    renewed = svc.store.serving_versions()[ns]
    assert renewed > first
    # A lease's worth of disuse (the private clock entry moved back rather than waiting 30 s).
    svc.bundles._namespaces[ns] -= 1000.0
    time.sleep(0.01)
    svc.bundles.report()
    assert svc.store.serving_versions()[ns] == renewed
    assert ns not in svc.bundles._namespaces


def test_the_heartbeat_reports_every_running_arm_even_an_idle_one(client: TestClient) -> None:
    """An arm nobody asked for in a while is still running: its namespace must stay reported,
    or retirement would delete it mid-experiment."""
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp
    exp = Experiment.model_validate(start_experiment(client, "idle-arms")["experiment"])
    version = svc.bundles.current.version
    names = [arm_namespace(version, exp.key(a)) for a in exp.arms]
    assert sorted(svc.surfaces.arm_namespaces(version)) == sorted(names)
    svc.bundles.report(svc.surfaces.arm_namespaces)
    assert set(names) <= set(svc.store.serving_versions())
    assert client.post("/v1/admin/surfaces/idle-arms/experiment/end", headers=auth()).status_code == 200
    assert svc.surfaces.arm_namespaces(version) == []


def test_a_change_that_landed_answers_200_even_when_the_figures_cannot_be_read(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streaming.stores import StoreUnavailable

    start_experiment(client, "figures-down")
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp

    def down(*args: object) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(svc.store, "read_stats", down)
    r = client.post("/v1/admin/surfaces/figures-down/experiment/end", headers=auth())
    assert r.status_code == 200 and r.json()["experiment"]["outcome"] == "ended"
    assert r.json()["degraded"] == ["figures unavailable"] and r.json()["arms"] == []
    assert client.get("/v1/admin/surfaces/figures-down/experiment", headers=auth()).status_code == 503


def test_an_unreadable_experiment_record_is_skipped_not_fatal(client: TestClient) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette types app as ASGIApp
    svc.store.put_surface("experiment:broken", b'{"id": 3}', b'{"surface": "broken"}')
    assert client.get("/v1/admin/surfaces/broken/experiment", headers=auth()).json()["experiment"] is None
    r = client.post("/v1/recommend", json={"user_id": "u", "surface": "broken", "k": 2})
    assert r.status_code == 200 and not r.json()["degraded"]
