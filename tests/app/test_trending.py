"""Trending items join every request's candidates, read through a once-a-second cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.recommender import candidate_rows, sparse_context
from app.trending import Trending
from offline.bundle import Bundle, load_current
from streaming.stores import MemoryStore, StoreUnavailable
from tests.app.conftest import auth


def an_item_outside(bundle: Bundle, user: str) -> tuple[int, np.ndarray]:
    _, context = sparse_context(bundle, user)
    rows = candidate_rows(bundle, context, fresh_per_request=0)
    outside = np.setdiff1d(np.arange(len(bundle.item_index)), rows)
    assert len(outside), "the test needs an item the user's candidates lack"
    return int(outside[0]), rows


def test_a_trending_item_reaches_a_user_whose_candidates_lack_it(bundle_dir: Path) -> None:
    bundle = load_current(bundle_dir)
    user = next(iter(bundle.user_index))
    row, before = an_item_outside(bundle, user)
    store = MemoryStore()
    trending = Trending(store, refresh_s=0.0)
    assert len(trending.rows(bundle, 20)) == 0
    item = str(bundle.arrays["item_ids"][row])
    store.put_trending(bundle.version, {item: 0.3, "not-in-this-bundle": 0.9, "cold": -0.1}, keep=100)
    rows = trending.rows(bundle, 20)
    assert rows.tolist() == [row]  # ids this bundle lacks are skipped, non-positive ones unlisted
    _, context = sparse_context(bundle, user)
    after = candidate_rows(bundle, context, fresh_per_request=0, trending=rows)
    assert set(after.tolist()) == set(before.tolist()) | {row}
    assert len(trending.rows(bundle, 0)) == 0


def test_the_list_is_read_once_per_refresh_and_survives_an_outage(bundle_dir: Path) -> None:
    bundle = load_current(bundle_dir)
    item = str(bundle.arrays["item_ids"][3])

    class Flaky(MemoryStore):
        reads = 0
        down = False

        def trending(self, version: str, n: int) -> list[str]:
            self.reads += 1
            if self.down:
                raise StoreUnavailable("down")
            return super().trending(version, n)

    store = Flaky()
    store.put_trending(bundle.version, {item: 0.2}, keep=10)
    cached = Trending(store, refresh_s=3600.0)
    assert cached.rows(bundle, 5).tolist() == [3] and cached.rows(bundle, 5).tolist() == [3]
    assert store.reads == 1
    live = Trending(store, refresh_s=0.0)
    assert live.rows(bundle, 5).tolist() == [3]
    store.down = True
    assert live.rows(bundle, 5).tolist() == [3]  # the last list stands while the store is down
    assert store.reads == 3


def test_operators_see_the_trending_items(client: TestClient) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]  # Starlette's untyped state
    recommend_body = {"user_id": "u-1", "k": 3}
    assert client.post("/v1/recommend", json=recommend_body).status_code == 200
    version = svc.bundles.current.version
    svc.store.put_trending(version, {"item-7": 0.4, "item-3": 0.1}, keep=100)
    body = client.get("/v1/admin/stats", headers=auth()).json()
    assert body["surfaces"]["default"]["learnt"]["trending"] == ["item-7", "item-3"]
