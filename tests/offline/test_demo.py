"""`onlinematch demo` uses the offline job's code path: its first bundle is trained by
``run_job`` on a history logged from the world, and its refresh trains on what it served."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.demo import ensure_demo_bundle, retrain, world_history
from app.main import Services, create_app
from bandits.world import World
from offline.bundle import Bundle, current_version
from offline.data import load_interactions, load_items
from tests.app.conftest import SMALL, settings_for


def test_world_history_is_in_the_job_format(tmp_path: Path) -> None:
    np.seterr(over="ignore")
    world = World(SMALL)
    interactions, items = world_history(world, tmp_path, rounds=200, shown=3)
    data, catalogue = load_interactions(interactions), load_items(items)
    assert len(data) == 600 and 0 < data.reward.sum() < 600
    assert np.all(np.diff(data.timestamp) >= 0)
    assert len(catalogue.item_ids) == SMALL.n_items and all(len(t) == 2 for t in catalogue.features["topics"])
    # Fresh items are created when they arrive, after the catalogue's first items.
    fresh = world.is_fresh
    assert catalogue.created_at[fresh].min() > catalogue.created_at[~fresh].min()


def test_the_demo_bundle_is_trained_by_the_job_and_refreshed_from_what_was_served(tmp_path: Path) -> None:
    np.seterr(over="ignore")
    world = World(SMALL)
    root = tmp_path / "bundles"
    first = ensure_demo_bundle(root, world, rounds=3000)
    assert ensure_demo_bundle(root, world) == first  # built once
    manifest = Bundle.load(root / first).manifest
    assert [i["rows"] for i in manifest["inputs"]] == [15_000]
    assert manifest["metrics"]["recall_at_50"] > manifest["metrics"]["fresh_recall_at_50_random"]

    settings = settings_for(root)
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
        shown = 0
        for n in range(60):
            r = client.post("/v1/recommend", json={"user_id": f"user-{n}", "k": 4})
            assert r.status_code == 200, r.text
            data = r.json()
            events = [
                {"event_id": f"{data['request_id']}-{m}", "request_id": data["request_id"], "item_id": item["item_id"],
                 "type": "click" if m == 0 else "impression"}
                for m, item in enumerate(data["items"])
            ]  # fmt: skip
            shown += len(events)
            assert client.post("/v1/feedback", json={"events": events}).status_code == 202

        report, joined = retrain(root, services.bus, settings.decisions_topic, settings.feedback_topic)
        assert joined.summary()["rows"] == shown and joined.unknown_request == 0
        if report.published:
            assert [i["rows"] for i in Bundle.load(root / report.version).manifest["inputs"]] == [15_000, shown]
            assert services.bundles.reload_if_changed()
            r = client.post("/v1/recommend", json={"user_id": "user-1", "k": 4})
            assert r.json()["model_version"] == report.version
        else:  # the gate kept the serving bundle, and said why
            assert "below the current bundle" in report.reason and current_version(root) == first
        assert report.metrics["warm_start"] == f"warm: from {first}"


def test_the_demo_progress_line_reports_the_interval_not_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    from app.demo import DemoTally, print_progress
    from app.metrics import Metrics

    tally, metrics, stop = DemoTally(), Metrics(), threading.Event()
    tally.add(4, 4, 4)  # before the first snapshot: not in any interval
    thread = threading.Thread(target=print_progress, args=(tally, metrics, stop, 0.5), daemon=True)
    thread.start()
    time.sleep(0.1)
    for _ in range(10):  # 10 requests of 4 slots, 1 explored and 2 clicked each
        tally.add(4, 1, 2)
    metrics.freshness.observe(0.010)
    metrics.freshness.observe(0.030)
    time.sleep(0.7)
    stop.set()
    thread.join(timeout=2)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.split() == ["demo:", "20.0", "req/s", "CTR", "50.00%", "explored", "25.0%", "freshness", "20", "ms"]
