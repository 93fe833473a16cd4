"""``make bench-serve``: /v1/recommend under wrk, against a bare FastAPI endpoint in the same run.

Set-up: a real redis-server holding Diag statistics for 100,000 items (8 coordinates each), a
real Kafka-protocol broker for the decision log, a 100,000-item bundle, one uvicorn worker;
each request carries 200 candidates and asks for k=10. wrk (Debian package) drives 8
connections over loopback. Ours and the bare baseline alternate ``--repeats`` times; medians
are reported. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench.services import Broker, RedisServer, free_port, real_services
from offline.bundle import publish
from streaming.redis_store import RedisStore
from streaming.stores import ItemDelta

N_ITEMS = 100_000
N_USERS = 10_000
DIM = 32
CLUSTERS = 64
CANDIDATES = 200


def build_bundle(root: Path, rng: np.random.Generator) -> str:
    def unit(x: np.ndarray) -> np.ndarray:
        return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))

    centroids = unit(rng.standard_normal((CLUSTERS, DIM))).astype(np.float32)
    items = unit(rng.standard_normal((N_ITEMS, DIM))).astype(np.float32)
    arrays = {
        "item_ids": np.array([f"item-{j}" for j in range(N_ITEMS)]),
        "item_emb": items,
        "item_bias": (rng.standard_normal(N_ITEMS) * 0.5 - 2.5).astype(np.float32),
        "item_created": np.full(N_ITEMS, time.time() - 86400.0),
        "user_ids": np.array([f"user-{u}" for u in range(N_USERS)]),
        "user_emb": unit(rng.standard_normal((N_USERS, DIM))).astype(np.float32),
        "default_user": unit(rng.standard_normal(DIM)).astype(np.float32),
        "centroids": centroids,
        "graph": np.argsort(-(centroids @ items.T), axis=1)[:, :100].astype(np.int32),
        "fresh": rng.choice(N_ITEMS, 1000, replace=False).astype(np.int32),
    }
    manifest = {
        "dim": DIM,
        "n_items": N_ITEMS,
        "n_users": N_USERS,
        "n_clusters": CLUSTERS,
        "k_nearest": 4,
        "temperature": 0.05,
        "prior": {"kind": "two_tower", "scale": 2.0},
        "default_prior": 0.07,
        "data_window": [0, 0],
        "metrics": {"source": "bench-serve"},
    }
    publish(root, "bench-serve", arrays, manifest)
    return "bench-serve"


def fill_statistics(url: str, version: str, rng: np.random.Generator) -> None:
    store = RedisStore.from_url(url, timeout_s=10.0)
    chunk = []
    for j in range(N_ITEMS):
        coords = rng.choice(CLUSTERS, 8, replace=False).astype(np.int64)
        chunk.append(ItemDelta(f"item-{j}", 0, 0, coords, rng.random(8) * 20, rng.standard_normal(8)))
        if len(chunk) == 2000:
            store.apply(version, 0, chunk, 3600.0)
            chunk = []
    if chunk:
        store.apply(version, 0, chunk, 3600.0)


def wrk_script(path: Path, rng: np.random.Generator) -> None:
    bodies = []
    for _ in range(64):
        cands = [f"item-{j}" for j in rng.choice(N_ITEMS, CANDIDATES, replace=False)]
        bodies.append(json.dumps({"user_id": f"user-{int(rng.integers(N_USERS))}", "k": 10, "candidates": cands}))
    lua = "local bodies = {\n" + ",\n".join("[[" + b + "]]" for b in bodies) + "\n}\n"
    lua += """
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"socket_errors": %d, "non2xx": %d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""
    path.write_text(lua)


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["socket_errors"] + raw["non2xx"],
    }


def wait_ready(port: int, path: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench-serve: wrk not found (Debian package wrk; `make bench-serve` installs it)")
    rng = np.random.default_rng(0)
    procs: list[subprocess.Popen[bytes]] = []
    with real_services("om-bench-serve-") as (redis, broker, work):
        try:
            _measure(redis, broker, work, rng, args, procs)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
    return 0


def _measure(
    redis: RedisServer,
    broker: Broker,
    work: Path,
    rng: np.random.Generator,
    args: argparse.Namespace,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    t0 = time.perf_counter()
    version = build_bundle(work / "bundles", rng)
    fill_statistics(redis.url, version, rng)
    print(f"set-up: bundle of {N_ITEMS} items and their statistics in Redis in {time.perf_counter() - t0:.1f}s")
    script = work / "bench.lua"
    wrk_script(script, rng)
    ours_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "BUNDLE_DIR": str(work / "bundles"),
        "PORT": str(ours_port),
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env, **quiet))  # type: ignore[call-overload]  # kwargs of Popen
    procs.append(
        subprocess.Popen(  # type: ignore[call-overload]  # kwargs of Popen
            [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), "--workers", "1",
             "--log-level", "warning", "--no-access-log"],
            **quiet,
        )
    )  # fmt: skip
    wait_ready(ours_port, "/readyz")
    wait_ready(bare_port, "/docs")
    for port in (ours_port, bare_port):
        run_wrk(port, script, 3, args.connections)  # warm-up
    ours, bare = [], []
    for i in range(args.repeats):
        ours.append(run_wrk(ours_port, script, args.seconds, args.connections))
        bare.append(run_wrk(bare_port, script, args.seconds, args.connections))
        print(f"  run {i + 1}: ours {ours[-1]['rps']:.0f} req/s p99 {ours[-1]['p99_ms']:.1f} ms | "
              f"bare {bare[-1]['rps']:.0f} req/s p99 {bare[-1]['p99_ms']:.1f} ms", flush=True)  # fmt: skip

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    summary = {
        "rps": round(med(ours, "rps"), 1),
        "p50_ms": round(med(ours, "p50_ms"), 2),
        "p99_ms": round(med(ours, "p99_ms"), 2),
        "throughput_vs_bare": round(med(ours, "rps") / med(bare, "rps"), 3),
        "bare_rps": round(med(bare, "rps"), 1),
        "bare_p99_ms": round(med(bare, "p99_ms"), 2),
        "errors": int(sum(r["errors"] for r in ours + bare)),
        "connections": args.connections,
        "candidates": CANDIDATES,
        "items_with_statistics": N_ITEMS,
    }
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'ours':10} {summary['rps']:>9} {summary['p50_ms']:>8} {summary['p99_ms']:>8}")
    print(f"{'bare':10} {summary['bare_rps']:>9} {med(bare, 'p50_ms'):>8.2f} {summary['bare_p99_ms']:>8}")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
