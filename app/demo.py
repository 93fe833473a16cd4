"""``onlinematch demo``: a bundle from the synthetic world, the service on embedded defaults,
and simulated users from the same world sending feedback, so exploration and learning can be
watched on ``/metrics`` (and the dashboard, issue #5)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import structlog

from bandits.world import World, WorldConfig
from offline.bundle import current_version, publish

log = structlog.get_logger(__name__)

DEMO_WORLD = WorldConfig(n_users=2000, n_clusters=32, n_items=1000, n_fresh=100, horizon=100_000, seed=7)


def build_world_bundle(root: Path, world: World, version: str, graph_width: int = 100) -> Path:
    """Publish ``world`` as a format-1 bundle: its prior is exactly the two-tower score
    ``affinity · <u, v> + item_bias`` (the per-cluster prior noise of the world is not modelled)."""
    c = world.config
    noise_free = c.base_logit + world.item_bias + world.prior_error_item
    shrink = np.where(world.is_fresh, c.fresh_prior_shrink, 0.0)
    item_bias = (noise_free - shrink * (noise_free - c.base_logit)).astype(np.float32)
    item_emb = world.item_vec.astype(np.float32)
    centroids = world.centres.astype(np.float32)
    logits = c.affinity * (centroids @ item_emb.T) + item_bias[None, :]
    graph = np.argsort(-logits, axis=1)[:, :graph_width].astype(np.int32)
    now = time.time()
    arrays = {
        "item_ids": np.array([f"item-{j}" for j in range(c.n_items)]),
        "item_emb": item_emb,
        "item_bias": item_bias,
        "item_created": np.where(world.is_fresh, now, now - 30 * 86400).astype(np.float64),
        "user_ids": np.array([f"user-{u}" for u in range(c.n_users)]),
        "user_emb": world.user_vec.astype(np.float32),
        "default_user": (world.user_vec.mean(axis=0) / np.linalg.norm(world.user_vec.mean(axis=0))).astype(np.float32),
        "centroids": centroids,
        "graph": graph,
        "fresh": world.fresh_items.astype(np.int32),
    }
    manifest = {
        "dim": c.latent_dim,
        "n_items": c.n_items,
        "n_users": c.n_users,
        "n_clusters": c.n_clusters,
        "k_nearest": c.k_nearest,
        "temperature": c.membership_temperature,
        "prior": {"kind": "two_tower", "scale": c.affinity},
        "default_prior": float(1.0 / (1.0 + np.exp(-c.base_logit))),
        "data_window": [now - 86400, now],
        "metrics": {"source": "synthetic world", "seed": c.seed},
    }
    return publish(root, version, arrays, manifest)


def ensure_demo_bundle(root: Path, world: World) -> str:
    version = current_version(root)
    if version is None:
        version = f"demo-{int(time.time())}"
        build_world_bundle(root, world, version)
        log.info("demo_bundle_built", version=version, root=str(root))
    return version


DEMO_SURFACE = {"policy": "diag_linucb", "alpha": 0.2, "explore_slots": 1, "explore_traffic": 0.3}


def simulate_users(
    base_url: str, world: World, stop: threading.Event, token: str, rate_per_s: float = 20.0, k: int = 4
) -> None:
    """Users from ``world`` ask for ``k`` items and click with the world's true probabilities."""
    rng = np.random.default_rng(world.config.seed + 1)
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        # More exploration than production's 1-6% so that a newcomer sees it happen.
        client.put("/v1/admin/surfaces/demo", json=DEMO_SURFACE, headers={"Authorization": f"Bearer {token}"})
        t = 0
        while not stop.is_set():
            t += 1
            user = int(rng.integers(world.config.n_users))
            try:
                rec = client.post("/v1/recommend", json={"user_id": f"user-{user}", "k": k, "surface": "demo"}).json()
                items = [i["item_id"] for i in rec.get("items", [])]
                rows = np.array([int(i.split("-")[1]) for i in items], dtype=np.int64)
                p = world.ctr(user, rows, 0) * world.slot_bias(len(rows)) if len(rows) else np.zeros(0)
                events = [
                    {"event_id": f"{rec['request_id']}-{n}-i", "request_id": rec["request_id"], "item_id": item,
                     "type": "impression", "ts": time.time()}
                    for n, item in enumerate(items)
                ]  # fmt: skip
                events += [
                    {"event_id": f"{rec['request_id']}-{n}-c", "request_id": rec["request_id"], "item_id": item,
                     "type": "click", "ts": time.time()}
                    for n, item in enumerate(items) if rng.random() < p[n]
                ]  # fmt: skip
                if events:
                    client.post("/v1/feedback", json={"events": events})
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                if stop.is_set():
                    return
                log.warning("demo_user_request_failed", error=type(exc).__name__)
                stop.wait(1.0)
            stop.wait(1.0 / rate_per_s)
