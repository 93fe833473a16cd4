"""``onlinematch demo``: the offline job trained on a history logged from the synthetic world,
the service on embedded defaults, and simulated users from the same world sending feedback, so
exploration and learning can be watched on the dashboard and ``/metrics``.

The demo's bundle comes from ``offline.job.run_job``, the code path of ``onlinematch train``:
first on a history logged from the world, then (``retrain``) on that history plus what the
service itself served and the simulated users clicked, read from the embedded bus with
``offline.logs.export_logs``. ``build_world_bundle`` (the world's own vectors) is what the
serving tests use, where the exact prior matters.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import structlog

from app.metrics import Metrics
from bandits.world import World, WorldConfig
from offline.bundle import ITEM_TOWER, current_version, publish
from streaming.bus import Bus

if TYPE_CHECKING:
    from offline.job import JobReport
    from offline.logs import LogJoin

log = structlog.get_logger(__name__)

# With one trap of real data (bandits/README.md): items good or bad for everyone that the offline
# prior does not know (global_effect, a logit spread of 1). Beside the fresh items the prior
# under-rates, they are what exploring finds and never exploring cannot: the demo's experiment
# (α = 0 against the default, bench/experiment.py) has a right answer.
DEMO_WORLD = WorldConfig(
    n_users=2000, n_clusters=32, n_items=1000, n_fresh=100, horizon=100_000, seed=7, global_effect=1.0
)


def build_world_bundle(root: Path, world: World, version: str, graph_width: int = 100) -> Path:
    """Publish ``world`` as a format-1 bundle: its prior is exactly the two-tower score
    ``affinity · <u, v> + item_bias`` (the per-cluster prior noise of the world is not modelled)."""
    c = world.config
    noise_free = c.base_logit + world.item_bias + world.prior_error_item
    shrink = np.where(world.is_fresh, c.fresh_prior_shrink, 0.0)
    # The world's prior traps (WorldConfig.prior_scale/offset) apply to the bundle's score too.
    item_bias = (c.prior_scale * (noise_free - shrink * (noise_free - c.base_logit)) + c.prior_offset).astype(
        np.float32
    )
    item_emb = world.item_vec.astype(np.float32)
    centroids = world.centres.astype(np.float32)
    logits = c.prior_scale * c.affinity * (centroids @ item_emb.T) + item_bias[None, :]
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
        # What offline data would call popular: the highest prior logits with no user term.
        "popular": np.argsort(-item_bias, kind="stable")[:50].astype(np.int32),
        # A content model for items published live (PUT /v1/items): feature ``topic=<c>`` embeds
        # a new item as user cluster c's centre; a featureless one as the mean item.
        "item_feature_vocab": np.array([f"topic={k}" for k in range(len(centroids))]),
        "item_feature_emb": centroids,
        "item_out_w": np.eye(c.latent_dim, dtype=np.float32),
        "item_out_b": (0.1 * item_emb.mean(axis=0)).astype(np.float32),
    }
    manifest = {
        "dim": c.latent_dim,
        "n_items": c.n_items,
        "n_users": c.n_users,
        "n_clusters": c.n_clusters,
        "k_nearest": c.k_nearest,
        "temperature": c.membership_temperature,
        "prior": {"kind": "two_tower", "scale": c.prior_scale * c.affinity},
        "default_prior": float(1.0 / (1.0 + np.exp(-c.base_logit))),
        "data_window": [now - 86400, now],
        "metrics": {"source": "synthetic world", "seed": c.seed},
        "popular": {"arrays": ["popular"]},
        "item_tower": {"arrays": list(ITEM_TOWER), "columns": ["topic"]},
    }
    return publish(root, version, arrays, manifest)


HISTORY_DAYS = 30.0


def world_history(world: World, out: Path, rounds: int = 20_000, shown: int = 5) -> tuple[Path, Path]:
    """Log a history from ``world`` in the job's input format: ``rounds`` users, each shown
    ``shown`` items drawn from the world's retrieval for them then (its top items by the
    world's noisy prior, and its fresh pool: a logging policy like a production one), clicking
    with the true probabilities; over the last ``HISTORY_DAYS`` days.

    Items get ``created_at`` from their arrival round and a multi-valued ``topics`` feature (the
    two strongest of the world's item features), so fresh items can be embedded from content.
    Returns the interactions and items files.
    """
    c = world.config
    rng = np.random.default_rng(c.seed + 2)
    span = HISTORY_DAYS * 86400.0
    start = time.time() - span
    horizon = int(0.8 * c.horizon)  # most fresh items have arrived by then
    out.mkdir(parents=True, exist_ok=True)
    interactions, items = out / "interactions.csv", out / "items.csv"
    rows = []
    for t in np.sort(rng.integers(0, horizon, rounds)).tolist():
        user = int(rng.integers(c.n_users))
        candidates = world.candidates(t, user)
        slate = rng.choice(candidates, min(shown, len(candidates)), replace=False)
        clicks = rng.random(len(slate)) < world.ctr(user, slate, t)
        ts = start + span * t / horizon
        pairs = zip(slate.tolist(), clicks.tolist(), strict=True)
        rows += [f"user-{user},item-{j},{ts:.3f},{int(y)}\n" for j, y in pairs]
    interactions.write_text("user_id,item_id,timestamp,reward\n" + "".join(rows))
    created = start + span * np.minimum(world.arrival, horizon) / horizon
    top = np.argsort(-world.item_features, axis=1)[:, :2]
    items.write_text(
        "item_id,created_at,topics\n"
        + "".join(f"item-{j},{created[j]:.3f},t{top[j, 0]}|t{top[j, 1]}\n" for j in range(c.n_items))
    )
    return interactions, items


def demo_job() -> Any:
    """The job's settings for the demo: one two-tower setting, fewer epochs, so that the first
    ``make run`` on a fresh machine trains in well under a minute."""
    from offline.job import JobConfig
    from offline.two_tower import TwoTowerConfig

    return JobConfig(two_tower=TwoTowerConfig(epochs=8), search=({},))


def ensure_demo_bundle(root: Path, world: World, rounds: int = 20_000) -> str:
    """The serving bundle, trained by the offline job on the world's history if there is none."""
    from offline.job import run_job

    version = current_version(root)
    if version is None:
        log.info("demo_bundle_training", root=str(root))
        interactions, items = world_history(world, root / ".demo-history", rounds)
        report = run_job(interactions, items, root, demo_job())
        if not report.published:
            raise RuntimeError(f"demo bundle not published: {report.reason}")
        version = report.version
        log.info("demo_bundle_built", version=version, recall_at_50=round(report.metrics["recall_at_50"], 3))
    return version


def retrain(root: Path, bus: Bus, decisions_topic: str, feedback_topic: str) -> tuple[JobReport, LogJoin]:
    """One refresh from the service's own logs plus the world's history. Raises ValueError when
    nothing has been served and shown yet."""
    from offline.job import run_job
    from offline.logs import export_logs

    history = root / ".demo-history"
    served = root / ".work" / "served.csv"
    joined = export_logs(bus, decisions_topic, feedback_topic, served)
    report = run_job([history / "interactions.csv", served], history / "items.csv", root, demo_job())
    log.info("demo_retrained", published=report.published, reason=report.reason, **joined.summary())
    return report, joined


def retrain_every_period(period_s: float, root: Path, bus: Bus, topics: tuple[str, str], stop: threading.Event) -> None:
    while not stop.wait(period_s):
        try:
            report, joined = retrain(root, bus, *topics)
        except Exception as exc:  # a failed refresh must not stop the demo; the next one retries
            log.warning("demo_retrain_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        print(
            f"onlinematch demo: retrained on {joined.summary()['rows']} served rows too: {report.version} "
            f"{report.reason} (Recall@50 {report.metrics['recall_at_50']:.3f})",
            flush=True,
        )


DEMO_SURFACE = {"policy": "diag_linucb", "alpha": 0.2, "explore_slots": 1, "explore_traffic": 0.3}


@dataclass
class DemoTally:
    """What the simulated users did, for the demo's progress line."""

    requests: int = 0
    slots: int = 0
    explored: int = 0
    clicks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, slots: int, explored: int, clicks: int) -> None:
        with self.lock:
            self.requests += 1
            self.slots += slots
            self.explored += explored
            self.clicks += clicks

    def snapshot(self) -> tuple[int, int, int, int]:
        with self.lock:
            return self.requests, self.slots, self.explored, self.clicks


def print_progress(tally: DemoTally, metrics: Metrics, stop: threading.Event, every_s: float = 5.0) -> None:
    """One short line every ``every_s``: requests/s, CTR per slot, realised exploration, and the
    mean learning freshness (event → applied in the store) over the interval."""
    last, last_fresh = tally.snapshot(), _freshness(metrics)
    while not stop.wait(every_s):
        now, fresh = tally.snapshot(), _freshness(metrics)
        requests, slots, explored, clicks = (a - b for a, b in zip(now, last, strict=True))
        n_fresh, sum_fresh = fresh[0] - last_fresh[0], fresh[1] - last_fresh[1]
        freshness = f"{1000 * sum_fresh / n_fresh:.0f} ms" if n_fresh else "-"
        print(
            f"demo: {requests / every_s:5.1f} req/s  CTR {clicks / max(slots, 1):6.2%}  "
            f"explored {explored / max(slots, 1):5.1%}  freshness {freshness}",
            flush=True,
        )
        last, last_fresh = now, fresh


def _freshness(metrics: Metrics) -> tuple[float, float]:
    count = metrics.registry.get_sample_value("om_feedback_freshness_seconds_count") or 0.0
    total = metrics.registry.get_sample_value("om_feedback_freshness_seconds_sum") or 0.0
    return count, total


def simulate_users(
    base_url: str,
    world: World,
    stop: threading.Event,
    token: str,
    rate_per_s: float = 20.0,
    k: int = 4,
    tally: DemoTally | None = None,
    surface: str = "demo",
    seed: int = 1,
) -> None:
    """Users from ``world`` ask for ``k`` items on ``surface`` and click with the world's true
    probabilities (their draws seeded by the world's seed plus ``seed``)."""
    rng = np.random.default_rng(world.config.seed + seed)
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        # More exploration than production's 1-6% so that a newcomer sees it happen.
        client.put(f"/v1/admin/surfaces/{surface}", json=DEMO_SURFACE, headers={"Authorization": f"Bearer {token}"})
        t = 0
        while not stop.is_set():
            t += 1
            user = int(rng.integers(world.config.n_users))
            try:
                rec = client.post("/v1/recommend", json={"user_id": f"user-{user}", "k": k, "surface": surface}).json()
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
                if tally is not None:
                    explored = sum(bool(i.get("explored")) for i in rec.get("items", []))
                    tally.add(len(items), explored, len(events) - len(items))
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                if stop.is_set():
                    return
                log.warning("demo_user_request_failed", error=type(exc).__name__)
                stop.wait(1.0)
            stop.wait(1.0 / rate_per_s)
