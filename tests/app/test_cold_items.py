"""Cold items (the bundle's fresh pool) read their pooled residual with the surface's ``lam_cold``
(``Recommender._lam0``): their prior is worth less, so their bonus is wider."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from bandits.world import World
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
