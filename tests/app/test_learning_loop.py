"""The closed loop in process: the service, trained on a synthetic world with the traps of real
data, driven over its HTTP API with feedback, must beat a popularity list and get better.

The world's traps (``bandits.world.WorldConfig``): the offline prior is on the wrong scale
(near 0.5 where the click rate is a few percent, as a rated-pairs student is), items have
effects for everyone that the prior does not know, a fifth of the catalogue is cold (features
only, a noisy prior), and clicks fall with the slot. This is the loop that collapsed to random
in round 1 (issue: learning from real data); ``make bench-loop`` runs it on MovieLens.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.demo import build_world_bundle
from app.main import create_app
from bandits.world import World, WorldConfig
from tests.app.conftest import auth, settings_for

K = 5
REQUESTS = 2400
TRAPS = WorldConfig(
    n_users=800, n_clusters=16, n_items=500, n_fresh=100, horizon=REQUESTS, seed=11,
    prior_scale=0.6, prior_offset=2.4, global_effect=1.0, prior_noise=0.5, fresh_prior_noise=1.5,
)  # fmt: skip


def drive(client: TestClient, world: World, surface: dict[str, object], feedback: bool = True) -> np.ndarray:
    """Clicks per request (REQUESTS,), each request's slate clicked by the world and, with
    ``feedback``, sent back."""
    if surface:
        assert client.put("/v1/admin/surfaces/default", json=surface, headers=auth()).status_code == 200
    clicks = np.zeros(REQUESTS)
    for t in range(REQUESTS):
        user = int(world.users[t])
        r = client.post("/v1/recommend", json={"user_id": f"user-{user}", "k": K})
        assert r.status_code == 200, r.text
        data = r.json()
        served = [i["item_id"] for i in data["items"]]
        slate = np.array([int(i.removeprefix("item-")) for i in served])
        clicked = world.click(t, user, slate)
        clicks[t] = clicked.sum()
        rid = data["request_id"]
        events = [{"event_id": f"{rid}-i{p}", "request_id": rid, "item_id": i, "type": "impression"}
                  for p, i in enumerate(served)]  # fmt: skip
        events += [{"event_id": f"{rid}-c{p}", "request_id": rid, "item_id": served[p], "type": "click"}
                   for p in np.flatnonzero(clicked).tolist()]  # fmt: skip
        if feedback:
            assert client.post("/v1/feedback", json={"events": events}).status_code == 202
    return clicks


def popularity(world: World) -> np.ndarray:
    """What a fixed list of the items most liked offline earns on the same users and draws."""
    mean_prior = np.mean([world.prior(u, np.arange(world.config.n_items)) for u in range(0, 800, 8)], axis=0)
    top = np.argsort(-mean_prior)[:K]
    return np.array([world.click(t, int(world.users[t]), top).sum() for t in range(REQUESTS)])


@pytest.fixture(scope="module")
def world() -> World:
    np.seterr(over="ignore")
    return World(TRAPS)


@pytest.fixture(scope="module")
def runs(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("loop-bundles")
    build_world_bundle(root, world, "v-loop")
    out = {}
    # "position ignored" is measured and printed, not asserted: in this world (k = 5) neither
    # wins reliably (first half 1.49 vs 1.36 in one run, 1.48 vs 1.57 in another).
    surfaces: dict[str, dict[str, object]] = {"service": {}, "position ignored": {"position_aware": False}}
    for name, surface in surfaces.items():
        with TestClient(create_app(settings_for(root))) as client:
            out[name] = drive(client, world, surface)
    with TestClient(create_app(settings_for(root))) as client:
        out["no feedback"] = drive(client, world, {}, feedback=False)
    out["popularity"] = popularity(world)
    return out


def quarters(clicks: np.ndarray) -> list[float]:
    return [float(q.mean()) for q in np.array_split(clicks, 4)]


def test_the_service_beats_a_popularity_list_and_learns(runs: dict[str, np.ndarray]) -> None:
    # Measured (seed 11): service 1.45 → 1.77 clicks/request from the first quarter to the
    # last, popularity 0.75; the round-1 model (no calibration, no pooling, no position, the
    # whole fresh pool) dipped to 0.79 in its second quarter and ended at 1.36.
    service, pop, static = quarters(runs["service"]), quarters(runs["popularity"]), quarters(runs["no feedback"])
    print("service", service, "popularity", pop, "no feedback", static, "position ignored",
          quarters(runs["position ignored"]))  # fmt: skip
    assert service[3] > 1.5 * pop[3], (service, pop)
    assert service[3] > 1.1 * service[0], service  # feedback makes it better
    assert service[3] > 1.1 * static[3], (service, static)  # better than the same prior unlearnt
    assert min(service) > 0.95 * static[0], (service, static)  # and never a starting point made worse
