from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.demo import build_world_bundle
from app.main import create_app
from app.settings import Settings
from bandits.world import World, WorldConfig

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


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def without_calibration(client: TestClient, surface: str = "default") -> None:
    """For tests of transport and storage, where one click must teach at once: with
    calibration on, a new surface first learns its click rate (``app/calibrations.py``)."""
    r = client.put(f"/v1/admin/surfaces/{surface}", json={"calibrate": False}, headers=auth())
    assert r.status_code == 200, r.text


__all__ = ["TOKEN", "auth", "dataclasses", "settings_for", "without_calibration"]
