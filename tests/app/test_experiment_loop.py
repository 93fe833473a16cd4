"""A live experiment in-process, faster than ``make bench-experiment``: the world's users on the
embedded service (recommender, bus, consumer and counters, no HTTP), two arms learning apart,
and a lift whose interval excludes zero in the direction the world implies.

The world's prior is exact for every item (no prior noise, no trap), so nothing is left for
exploring to find: any exploration can only cost clicks. The control arm never explores (α = 0,
the issue's control); the other explores on every request, with three of four slots and a wide
bonus, so the cost is large enough to show in a few thousand requests. (With the demo's own
settings, exploring one slot on 30% of requests, the difference in worlds this small is a few
per cent either way at this length: seeded runs measured -6% to +8%. The ten-minute demo run,
``make bench-experiment``, is where that experiment is measured.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.dashboard import experiment_view, window_minutes
from app.demo import build_world_bundle
from app.experiments import start
from app.main import Services
from app.surfaces import SurfaceConfig
from bandits.world import World, WorldConfig
from streaming.events import FeedbackEvent
from tests.app.conftest import settings_for

EXACT = WorldConfig(
    n_users=600, n_clusters=16, n_items=400, n_fresh=0, horizon=1000, seed=3, prior_noise=0.0, fresh_prior_noise=0.0
)
REQUESTS = 2500


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Services, World]]:
    np.seterr(over="ignore")
    world = World(EXACT)
    build_world_bundle(tmp_path, world, "v-exact")
    svc = Services.build(settings_for(tmp_path))
    svc.start()
    yield svc, world
    svc.close()


def test_an_experiment_shows_what_exploring_costs_where_the_prior_is_exact(services: tuple[Services, World]) -> None:
    svc, world = services
    svc.surfaces.put("s", SurfaceConfig(alpha=0.2, explore_slots=1, explore_traffic=0.3), "test")
    experiment = start(
        "s",
        "cost",
        "control",
        [
            ("control", 0.5, {"alpha": 0.0}),
            ("explore", 0.5, {"alpha": 2.0, "explore_traffic": 1.0, "explore_slots": 3}),
        ],
        svc.surfaces.get("s"),
        "test",
    )
    svc.surfaces.put_experiment(experiment, "test", "started")
    rng = np.random.default_rng(11)
    for n in range(REQUESTS):
        user = int(rng.integers(EXACT.n_users))
        rec = svc.recommender.recommend(f"user-{user}", "s", 4, None, [])
        items = [s.item_id for s in rec.items]
        p = world.ctr(user, np.array([int(i.split("-")[1]) for i in items]), 0) * world.slot_bias(len(items))
        now = time.time()
        events = [FeedbackEvent(f"{n}-{m}-i", rec.request_id, i, "impression", 1.0, now) for m, i in enumerate(items)]
        events += [
            FeedbackEvent(f"{n}-{m}-c", rec.request_id, i, "click", 1.0, now)
            for m, i in enumerate(items)
            if rng.random() < p[m]
        ]
        svc.recommender.feedback(events)
    deadline = time.monotonic() + 30
    while True:
        view = experiment_view(svc, experiment, window_minutes(time.time()))
        arms = {a["name"]: a for a in view["arms"]}
        if sum(a["requests_shown"] for a in arms.values()) == REQUESTS:
            break
        assert time.monotonic() < deadline, arms
        time.sleep(0.1)
    control, explore = arms["control"], arms["explore"]
    assert min(control["requests_shown"], explore["requests_shown"]) > 0.4 * REQUESTS
    # Exploring cost clicks, and the interval says so: it lies wholly below zero.
    assert explore["diff_high"] < 0 and explore["lift_high"] < 0, explore
    assert explore["significant"] and "fewer clicks per request than control" in explore["verdict"]
    # Each arm's figure is its own traffic's: the explore arm explored, the control never did.
    assert explore["impressions"] == 4 * explore["requests_shown"]
