"""``make bench-offline``: the offline job on the MovieLens sample, and serving's load of a
1,000,000-item bundle. The last line is JSON.

Both embeddings (two-tower and factorisation) are scored by Recall@K on the temporal holdout;
teacher, students and the embeddings' own score by AUC of the rankers' labels there (each
rating labelled with its preference beside a random item labelled 0: offline/job.py,
``ranker_rows``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.movielens import to_contract
from offline.bundle import publish
from offline.job import run_job

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


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="om-bench-offline-"))
    interactions, items = to_contract(work)
    started = time.perf_counter()
    report = run_job(interactions, items, work / "bundles")
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
