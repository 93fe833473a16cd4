"""``make bench-offline``: the offline job on the MovieLens sample, and serving's load of a
1,000,000-item bundle. The last line is JSON.

Both embeddings (two-tower and factorisation) are scored by Recall@K on the temporal holdout;
teacher, students and the embeddings' own score by AUC of the rankers' labels there (each
rating labelled with its preference beside a random item labelled 0: offline/job.py,
``ranker_rows``).

Top-ten click quality: the job again, on ``make bench-loop``'s world (bench/loop.py: ratings
before its 80th-percentile time, genres and year; a ground truth fitted on all ratings), and for
every world user the expected clicks of the ten items the published bundle's prior ranks first
(position bias ``1 / log2(pos + 2)``, no bandit statistics yet): over every item, and over
serving's retrieval candidates (``app.recommender.candidate_rows``: the user's clusters' graph
rows and the ``popular_per_request`` most recently popular, without the random fresh draw).

``--popularity-search '[[fitted, blend], ...]'`` overrides ``JobConfig.popularity_search`` (the
factorisation's recent-popularity offset, chosen on an inner split) for both runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.recommender import candidate_rows, priors, sparse_context
from app.surfaces import SurfaceConfig
from bench.loop import build_world, exam
from bench.movielens import to_contract
from offline.bundle import Bundle, publish
from offline.job import JobConfig, run_job

LOAD_PROBE = """
import json, resource, sys, time
from pathlib import Path
from app.metrics import Metrics
from app.recommender import BundleHolder
start = time.perf_counter()
holder = BundleHolder(Path(sys.argv[1]), Metrics())
holder.reload_if_changed()
n = len(holder.current.item_index)
print(json.dumps({"seconds": time.perf_counter() - start, "items": n,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def big_bundle(root: Path, n_items: int = 1_000_000, dim: int = 64) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n_items, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    arrays = {
        "item_ids": np.array([f"item-{j}" for j in range(n_items)]),
        "item_emb": emb,
        "item_bias": np.zeros(n_items, np.float32),
        "item_created": np.zeros(n_items),
        "user_ids": np.array(["u"]),
        "user_emb": emb[:1].copy(),
        "default_user": emb[0].copy(),
        "centroids": emb[:64].copy(),
        "graph": rng.integers(0, n_items, (64, 100), dtype=np.int32),
        "fresh": rng.integers(0, n_items, 1000, dtype=np.int32),
    }
    manifest = {"dim": dim, "n_items": n_items, "n_users": 1, "n_clusters": 64, "k_nearest": 4,
                "temperature": 0.05, "prior": {"kind": "two_tower", "scale": 1.0}, "default_prior": 0.05,
                "data_window": [0, 0], "metrics": {}}  # fmt: skip
    publish(root, "big", arrays, manifest)


def click_quality(work: Path, config: JobConfig) -> dict[str, float]:
    """Expected clicks per request of the served bundle's top ten on bench-loop's world (the
    module docstring): all users, and the users the bundle knows and does not."""
    world, interactions, items = build_world(work, hits=False, seed=0)
    report = run_job(interactions, items, work / "loop-bundles", config)
    bundle = Bundle.load(work / "loop-bundles" / report.version)
    every = np.arange(len(bundle.item_index), dtype=np.int64)
    truth = np.array([bundle.item_index[i] for i in world.items])  # bundle row → world column
    column = np.empty(len(truth), dtype=np.int64)
    column[truth] = np.arange(len(truth))
    popular = SurfaceConfig().popular_per_request
    weights = exam(10)
    clicks: dict[str, list[float]] = {"all": [], "candidates": []}
    known = np.array([u in bundle.user_index for u in world.users])
    for n, user in enumerate(world.users):
        u, context = sparse_context(bundle, user)
        for name, rows in (("all", every), ("candidates", candidate_rows(bundle, context, 0, None, popular))):
            p = priors(bundle, u, rows)
            top = rows[np.argsort(-p, kind="stable")[:10]]
            clicks[name].append(float((world.p(n, column[top], False) * weights).sum()))
    all_users, candidates = np.array(clicks["all"]), np.array(clicks["candidates"])
    return {
        "top10_clicks": float(all_users.mean()),
        "top10_clicks_known": float(all_users[known].mean()),
        "top10_clicks_cold": float(all_users[~known].mean()) if (~known).any() else float("nan"),
        "top10_clicks_candidates": float(candidates.mean()),
        # The bundle's recency-popular list (``popular``), the same ten for everyone: the reference.
        "top10_clicks_recent_popularity": float(
            np.mean(
                [(world.p(n, column[bundle.arrays["popular"][:10]], False) * weights).sum() for n in range(len(known))]
            )
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--popularity-search", help="JSON [[fitted, blend], ...] for JobConfig.popularity_search")
    args = parser.parse_args(argv)
    config = JobConfig()
    if args.popularity_search:
        pairs = tuple((float(f), float(b)) for f, b in json.loads(args.popularity_search))
        config = replace(config, popularity_search=pairs)
    work = Path(tempfile.mkdtemp(prefix="om-bench-offline-"))
    interactions, items = to_contract(work)
    started = time.perf_counter()
    report = run_job(interactions, items, work / "bundles", config)
    job_seconds = time.perf_counter() - started
    bundle_mb = sum(f.stat().st_size for f in (work / "bundles" / report.version).iterdir()) / 2**20
    m = report.metrics
    print(f"job: {job_seconds:.1f}s, published={report.published} ({report.reason}), bundle {bundle_mb:.1f} MB")
    print(f"  retrieval served: {m['retrieval']} (offline/job.py, JobConfig.retrieval)")
    for key in ("recall_at_10", "recall_at_50", "recall_at_100", "recall_at_50_two_tower",
                "recall_at_50_factorisation", "recall_at_50_popularity",
                "recall_at_50_recent_popularity", "recall_at_50_no_logq",
                "fresh_recall_at_50", "fresh_recall_at_50_random", "teacher_auc", "teacher_logloss",
                "constant_logloss", "dot_prior_auc"):  # fmt: skip
        print(f"  {key:<28} {m[key]:.4f}")
    for size, a, ll, agree in zip(m["student_sizes"], m["student_auc"], m["student_logloss"],
                                  m["student_teacher_agreement"], strict=True):  # fmt: skip
        print(f"  student h={size:<3} AUC {a:.4f}  log-loss {ll:.4f}  agreement with teacher {agree:.3f}")
    quality = click_quality(work, config)
    print(
        f"  top-ten clicks per request on bench-loop's world: {quality['top10_clicks']:.3f} over every item "
        f"(known users {quality['top10_clicks_known']:.3f}, cold {quality['top10_clicks_cold']:.3f}), "
        f"{quality['top10_clicks_candidates']:.3f} over the retrieval candidates; "
        f"the recency-popular ten {quality['top10_clicks_recent_popularity']:.3f}"
    )
    print(f"  popularity offset: {m['popularity_offset']} (inner split Recall@50: {m['popularity_search']})")
    big_bundle(work / "big")
    probe = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, str(work / "big")], capture_output=True, text=True, check=True
    )
    load = json.loads(probe.stdout.strip().splitlines()[-1])
    print(
        f"serving loads a {load['items']:,}-item 64-dim bundle in {load['seconds']:.2f}s, "
        f"peak RSS {load['rss_mb']:.0f} MB"
    )
    print(json.dumps({
        "retrieval": m["retrieval"],
        "recall_at_50": round(m["recall_at_50"], 4),
        "recall_at_50_two_tower": round(m["recall_at_50_two_tower"], 4),
        "recall_at_50_factorisation": round(m["recall_at_50_factorisation"], 4),
        "recall_at_50_popularity": round(m["recall_at_50_popularity"], 4),
        "recall_at_50_no_logq": round(m["recall_at_50_no_logq"], 4),
        "recall_at_50_recent_popularity": round(m["recall_at_50_recent_popularity"], 4),
        "search": m["search"],
        "popularity_offset": m["popularity_offset"],
        "popularity_search": m["popularity_search"],
        **{key: round(value, 4) for key, value in quality.items()},
        "fresh_recall_at_50": round(m["fresh_recall_at_50"], 4),
        "fresh_recall_at_50_random": round(m["fresh_recall_at_50_random"], 4),
        "teacher_auc": round(m["teacher_auc"], 4),
        "student_auc": [round(a, 4) for a in m["student_auc"]],
        "student_sizes": m["student_sizes"],
        "teacher_logloss": round(m["teacher_logloss"], 4),
        "student_logloss": [round(x, 4) for x in m["student_logloss"]],
        "constant_logloss": round(m["constant_logloss"], 4),
        "student_teacher_agreement": [round(a, 3) for a in m["student_teacher_agreement"]],
        "served_prior": m.get("served_student", f"{m['retrieval']} score, calibrated"),
        "train_seconds": round(job_seconds, 1),
        "bundle_mb": round(bundle_mb, 2),
        "load_1m_seconds": round(load["seconds"], 2),
        "load_1m_rss_mb": round(load["rss_mb"]),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
