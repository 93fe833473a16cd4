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
from app.main import Services, create_app
from bandits.world import World
from streaming.stores import retirable
from tests.app.conftest import settings_for

CANDIDATES = [f"item-{n}" for n in range(30)]


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
    root = tmp_path / "bundles"
    build_world_bundle(root, world, "v1")
    settings = settings_for(root, attribution_window_s=3.0, retire_every_s=3600.0)
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        consumer = services.consumer
        assert consumer is not None

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
        assert services.store.stats_versions() >= {"v1", "v2"}

        # Within the attribution window v1 is kept: a v1 request may still be clicked.
        assert consumer.retire() == {}
        # Past it, with this replica beating v2 only, v1's namespace goes and v2's stays.
        wait_for(lambda: time.time() - services.store.serving_versions()["v1"] > 3.0)
        dropped = consumer.retire()
        assert set(dropped) == {"v1"} and dropped["v1"] >= 2
        assert w2_of(services, "v1", old_item, context) == 0.0
        assert w2_of(services, "v2", new_item, context) > 0.0
        assert "v1" not in services.store.stats_versions()


def test_nothing_is_retired_without_a_live_replica() -> None:
    # A fleet that stopped reporting (or predates heartbeats) is no evidence of what is unused.
    assert retirable({"v1", "v2"}, {}, now=1e9, grace_s=3600.0) == []
    assert retirable({"v1", "v2"}, {"v2": 1e9 - 7200}, now=1e9, grace_s=3600.0) == []
    assert retirable({"v1", "v2"}, {"v2": 1e9 - 60}, now=1e9, grace_s=3600.0) == ["v1"]
