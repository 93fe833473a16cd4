from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.demo import build_world_bundle
from app.main import create_app
from app.settings import Settings
from bandits.world import World, WorldConfig
from bench.services import free_port

SMALL = WorldConfig(n_users=300, n_clusters=16, n_items=400, n_fresh=40, horizon=1000, seed=3)
TOKEN = "test-operator-token"


@pytest.fixture(scope="session")
def world() -> World:
    np.seterr(over="ignore")
    return World(SMALL)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    root = tmp_path_factory.mktemp("bundles")
    build_world_bundle(root, world, "v-test-1")
    return root


def settings_for(bundle_dir: Path, **overrides: object) -> Settings:
    base = Settings(bundle_dir=bundle_dir, operator_token=TOKEN, surface_cache_s=0.0)
    return base.model_copy(update=overrides)


@pytest.fixture
def client(bundle_dir: Path) -> Iterator[TestClient]:
    """The service on embedded defaults (in-process store, bus and consumer)."""
    with TestClient(create_app(settings_for(bundle_dir))) as c:
        yield c


def real_settings(bundle_dir: Path, redis_url: str, bootstrap: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return settings_for(
        bundle_dir,
        redis_url=redis_url,
        kafka_bootstrap_servers=bootstrap,
        feedback_topic=f"feedback-{tag}",
        decisions_topic=f"decisions-{tag}",
        dead_letter_topic=f"dlq-{tag}",
        items_topic=f"items-{tag}",
        consumer_group=f"group-{tag}",
        feedback_partitions=4,
        kafka_timeout_s=1.5,
        redis_timeout_s=0.3,
    )


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive(), "the server exited during start-up"
        assert time.monotonic() < deadline, "the server did not start within 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def without_calibration(client: TestClient, surface: str = "default") -> None:
    """For tests of transport and storage, where one click must teach at once: with
    calibration on, a new surface first learns its click rate (``app/calibrations.py``)."""
    r = client.put(f"/v1/admin/surfaces/{surface}", json={"calibrate": False}, headers=auth())
    assert r.status_code == 200, r.text


__all__ = ["TOKEN", "auth", "dataclasses", "real_settings", "serving", "settings_for", "without_calibration"]
