"""Cold items (the bundle's fresh pool) read their pooled residual with the surface's ``lam_cold``
(``Recommender._lam0``): their prior is worth less, so their bonus is wider. Once the statistics
know one (``fresh_graduate``), it leaves the fresh draw (``app/fresh.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.recommender import candidate_rows, sparse_context
from bandits.world import World
from offline.bundle import load_current
from tests.app.conftest import auth


def explored_cold_share(client: TestClient, world: World, lam_cold: float) -> float:
    """Share of exploration slots (the last of three, by UCB, on every request) that went to a
    cold item, over requests whose candidates are five cold items and five warm ones."""
    surface = {"explore_traffic": 1.0, "explore_slots": 1, "calibrate": False, "position_randomization": 0.0,
               "lam_cold": lam_cold}  # fmt: skip
    assert client.put("/v1/admin/surfaces/cold", json=surface, headers=auth()).status_code == 200
    cold = {f"item-{i}" for i in world.fresh_items[:5].tolist()}
    warm = [f"item-{i}" for i in np.flatnonzero(~world.is_fresh)[:5].tolist()]
    picks = []
    for user in range(40):
        r = client.post("/v1/recommend", json={"user_id": f"user-{user}", "surface": "cold", "k": 3,
                                               "candidates": sorted(cold) + warm})  # fmt: skip
        assert r.status_code == 200, r.text
        picks.append(r.json()["items"][-1]["item_id"] in cold)
    return float(np.mean(picks))


def test_cold_items_take_the_exploration_slots_when_their_prior_is_worth_little(
    client: TestClient, world: World
) -> None:
    # At lam_cold 0.1 a cold item's bonus is ~3x a warm one's: every exploration
    # slot is cold. At the process's lam (1) the bonus is the same for both and the priors
    # decide (0.65 measured).
    assert explored_cold_share(client, world, 0.1) == 1.0
    assert explored_cold_share(client, world, 1.0) < 0.8


def test_lam_cold_is_validated(client: TestClient) -> None:
    r = client.put("/v1/admin/surfaces/cold", json={"lam_cold": 0.0}, headers=auth())
    assert r.status_code == 422 and "lam_cold" in r.text


def test_an_item_leaves_the_fresh_pool_once_its_evidence_reaches_fresh_graduate(
    client: TestClient, world: World, bundle_dir: Path
) -> None:
    # Impressions at the top slot, each one top-slot impression's worth of evidence on the
    # pool coordinate; three reach fresh_graduate 3 on surface "grad", and the next read of the
    # item graduates it there. Surface "keep" (threshold 1000) and the unpooled surface "flat"
    # read the same statistics and keep it in their pools.
    base = {"calibrate": False, "position_randomization": 0.0, "explore_traffic": 0.0}
    for surface, extra in (("grad", {"fresh_graduate": 3.0}), ("keep", {"fresh_graduate": 1000.0}),
                           ("flat", {"fresh_graduate": 0.1, "pooled": False})):  # fmt: skip
        r = client.put(f"/v1/admin/surfaces/{surface}", json={**base, **extra}, headers=auth())
        assert r.status_code == 200, r.text
    row = int(world.fresh_items[0])
    item = f"item-{row}"
    recommender = client.app.state.services.recommender  # type: ignore[attr-defined]  # Starlette's state

    def graduated(surface: str) -> int:
        learnt = client.get("/v1/admin/stats", headers=auth()).json()["surfaces"][surface]["learnt"]
        assert learnt["fresh_pool"] == len(world.fresh_items)
        return int(learnt["fresh_graduated"])

    def show(n: int, surface: str = "grad") -> None:
        body = {"user_id": f"user-{n}", "k": 1, "candidates": [item], "surface": surface}
        rec = client.post("/v1/recommend", json=body).json()
        assert rec["items"][0]["item_id"] == item and not rec["degraded"]
        event = {"request_id": rec["request_id"], "item_id": item, "ts": time.time(), "type": "impression"}
        assert client.post("/v1/feedback", json={"events": [{**event, "event_id": f"g-{n}"}]}).status_code == 202

    for n in range(2):
        show(n)
    time.sleep(0.5)
    show(2)  # reads 2 impressions' evidence: still below 3
    assert graduated("grad") == 0
    deadline = time.monotonic() + 20
    n = 3
    while graduated("grad") == 0:  # the consumer applies in the background
        assert time.monotonic() < deadline, "the item never graduated"
        show(n)
        n += 1
        time.sleep(0.1)
    assert graduated("grad") == 1
    for surface in ("keep", "flat"):
        show(n, surface)  # each reads the same evidence with its own rule
        n += 1
        assert graduated(surface) == 0
        assert row in recommender.fresh_eligible(surface).tolist()
    assert graduated("grad") == 1  # the other surfaces' reads left grad's verdict alone

    # grad's retrieval draws from the pool without it: with a budget of all the rest, the draw
    # takes every other pool item, and the graduate only where the graph brings it.
    eligible = recommender.fresh_eligible("grad")
    assert row not in eligible.tolist() and len(eligible) == len(world.fresh_items) - 1
    bundle = load_current(bundle_dir)
    _, context = sparse_context(bundle, "user-0")
    drawn = candidate_rows(bundle, context, len(eligible), np.random.default_rng(0), fresh=eligible)
    assert set(eligible.tolist()) <= set(drawn.tolist())
    graph = set(bundle.arrays["graph"][context.indices].ravel().tolist())
    assert row in graph or row not in drawn.tolist()


def test_fresh_graduate_is_validated(client: TestClient) -> None:
    r = client.put("/v1/admin/surfaces/cold", json={"fresh_graduate": 0}, headers=auth())
    assert r.status_code == 422 and "fresh_graduate" in r.text
