from __future__ import annotations

import numpy as np
import pytest

from bandits import POLICY_NAMES, Policy, make_policy
from bandits.world import World, WorldConfig

SMALL_WORLD = WorldConfig(n_users=200, n_clusters=8, k_nearest=3, n_items=60, n_fresh=10, horizon=300, n_candidates=40)


@pytest.fixture(params=POLICY_NAMES)
def policy(request: pytest.FixtureRequest) -> Policy[object]:
    """Every registered policy, discovered from the registry (a new one is tested automatically)."""
    return make_policy(str(request.param))


@pytest.fixture(scope="session")
def small_world() -> World:
    np.seterr(over="ignore")
    return World(SMALL_WORLD)
