"""The policy for a bundle version change (streaming.stores.retirable), end to end on the
embedded service: a new bundle starts empty, feedback goes to the version that served it, and
an old namespace is retired only after no replica has served it for the attribution window."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.demo import build_world_bundle
from app.lease import Report
from app.main import Services, create_app
from bandits.world import World
from streaming.stores import ItemDelta, MemoryStore, retirable
from tests.app.conftest import settings_for, without_calibration

CANDIDATES = [f"item-{n}" for n in range(30)]
LEASE_S = 0.2


def w2_of(services: Services, version: str, item: str, context: list[int]) -> float:
    w2, _ = services.store.gather(version, [item], np.array(context))
    return float(w2.sum())


def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]  # a zero-argument callable
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_feedback_follows_the_serving_version_and_old_statistics_retire(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.main.HEARTBEAT_S", 0.05)
    monkeypatch.setattr("streaming.consumer.RETIRE_SLACK_S", 0.0)
    monkeypatch.setattr("streaming.stores.SERVING_LEASE_S", LEASE_S)
    root = tmp_path / "bundles"
    build_world_bundle(root, world, "v1")
    settings = settings_for(root, attribution_window_s=3.0, retire_every_s=3600.0)
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        consumer = services.consumer
        assert consumer is not None

        without_calibration(client)

        def ask() -> dict[str, object]:
            r = client.post("/v1/recommend", json={"user_id": "user-3", "k": 5, "candidates": CANDIDATES})
            assert r.status_code == 200, r.text
            return dict(r.json())

        def click(data: dict[str, object], item: str) -> None:
            event = {"event_id": f"{data['request_id']}-c", "request_id": data["request_id"], "item_id": item}
            r = client.post("/v1/feedback", json={"events": [{**event, "type": "click"}]})
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text

        old = ask()
        assert old["model_version"] == "v1"
        context = services.store.get_contexts([str(old["request_id"])])[str(old["request_id"])].indices
        build_world_bundle(root, world, "v2")  # moves `current`
        assert services.bundles.reload_if_changed()
        # The swap reported v2 before it answered anything from it: no window without a report.
        assert "v2" in services.store.serving_versions()
        new = ask()
        assert new["model_version"] == "v2"
        old_item = old["items"][0]["item_id"]  # type: ignore[index]  # JSON
        new_item = next(i["item_id"] for i in new["items"] if i["item_id"] != old_item)  # type: ignore[attr-defined]  # JSON

        # A click on a v1 request, after the switch, still teaches v1 — and only v1.
        click(old, old_item)
        click(new, new_item)
        wait_for(lambda: w2_of(services, "v1", old_item, context) > 0 and w2_of(services, "v2", new_item, context) > 0)
        assert w2_of(services, "v2", old_item, context) == 0.0  # the new bundle started empty
        assert w2_of(services, "v1", new_item, context) == 0.0
        assert set(services.store.stats_versions()) >= {"v1", "v2"}

        # Within the attribution window v1 is kept: a v1 request may still be clicked. And v2,
        # whose statistics are seconds old, is kept by construction (it was reported at the swap).
        assert consumer.retire() == {}
        # Past window and lease, with this replica reporting v2 only, v1 goes and v2 stays.
        wait_for(lambda: time.time() - services.store.serving_versions()["v1"] > 3.0 + LEASE_S)
        dropped = consumer.retire()
        assert set(dropped) == {"v1"} and dropped["v1"] >= 2
        assert w2_of(services, "v1", old_item, context) == 0.0
        assert w2_of(services, "v2", new_item, context) > 0.0
        assert "v1" not in services.store.stats_versions()


def test_a_swap_to_a_version_being_retired_waits_and_then_starts_empty(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.main.HEARTBEAT_S", 0.05)
    root = tmp_path / "bundles"
    build_world_bundle(root, world, "v1")
    settings = settings_for(root, retire_every_s=3600.0)
    store = MemoryStore(clock=lambda: 1000.0)  # every namespace first written long ago
    with TestClient(create_app(settings, Services.build(settings, store))) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        # A rollback target whose old namespace a retirement pass has just marked.
        store.apply("v0", 0, [ItemDelta("item-1", 1, 1, np.array([0]), np.array([1.0]), np.array([0.5]))], 60.0)
        store.heartbeat("v0", time.time() - 10 * 3600)
        assert store.begin_retire("v0", time.time(), grace_s=60.0, lease_s=LEASE_S)
        build_world_bundle(root, world, "v0")
        assert not services.bundles.reload_if_changed()
        assert services.bundles.current.version == "v1"
        assert "retired" in (services.bundles.last_error or "")
        # The deletion ends; the next poll swaps, and v0 serves from an empty namespace.
        assert store.drop_version("v0") >= 2
        assert services.bundles.reload_if_changed() and services.bundles.current.version == "v0"
        assert w2_of(services, "v0", "item-1", [0]) == 0.0
        r = client.post("/v1/recommend", json={"user_id": "user-3", "k": 5, "candidates": CANDIDATES})
        assert r.status_code == 200 and r.json()["model_version"] == "v0" and not r.json()["degraded"]


def test_without_a_held_lease_no_context_is_stored(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A replica whose reports stopped landing serves on, but nothing it serves can be joined to
    # feedback, so no retirement pass can race it; the response says so.
    monkeypatch.setattr("app.main.HEARTBEAT_S", 3600.0)
    monkeypatch.setattr("streaming.stores.SERVING_LEASE_S", LEASE_S)
    with TestClient(create_app(settings_for(bundle_dir))) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        held = client.post("/v1/recommend", json={"user_id": "user-3", "k": 5, "candidates": CANDIDATES}).json()
        assert not held["degraded"] and services.store.get_contexts([held["request_id"]])
        wait_for(lambda: not services.bundles.reported(services.bundles.current.version))
        lapsed = client.post("/v1/recommend", json={"user_id": "user-3", "k": 5, "candidates": CANDIDATES}).json()
        assert lapsed["degraded"] and lapsed["degraded_reasons"] == ["version_unreported"]
        assert services.store.get_contexts([lapsed["request_id"]]) == {}
        assert services.bundles.report() is Report.GRANTED
        renewed = client.post("/v1/recommend", json={"user_id": "user-3", "k": 5, "candidates": CANDIDATES}).json()
        assert not renewed["degraded"]


def test_nothing_is_retired_without_a_live_replica() -> None:
    # A fleet that stopped reporting (or predates heartbeats) is no evidence of what is unused.
    born = {"v1": 0.0, "v2": 0.0}
    assert retirable(born, {}, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == []
    assert retirable(born, {"v2": 1e9 - 7200}, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == []
    assert retirable(born, {"v2": 1e9 - 60}, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == ["v1"]


def test_a_version_never_reported_is_kept_until_it_has_existed_for_the_grace_period() -> None:
    # Written by a replica that has not reported yet (an older release mid-upgrade): its first
    # write is the evidence, so a fresh namespace survives even with no serving record at all.
    serving = {"v2": 1e9 - 1}
    assert retirable({"v3": 1e9 - 100}, serving, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == []
    assert retirable({"v3": 1e9 - 3631}, serving, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == ["v3"]
    # A report only a lease older than the grace period still protects it.
    serving_v3 = {**serving, "v3": 1e9 - 3620}
    assert retirable({"v3": 0.0}, serving_v3, set(), now=1e9, grace_s=3600.0, lease_s=30.0) == []
