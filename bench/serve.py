"""``make bench-serve``: /v1/recommend under wrk, against a bare FastAPI endpoint in the same run.

Set-up: a real redis-server holding Diag statistics for 100,000 items (8 cluster coordinates
and the pooled one each), a real Kafka-protocol broker for the decision log, a 100,000-item
bundle, one uvicorn worker (``--workers N`` for more); each request carries 200 candidates and
asks for k=10. wrk (Debian package) drives 8 connections over loopback. Ours and the bare
baseline alternate ``--repeats`` times; medians are reported, with each server's CPU-seconds
per 1,000 requests read from /proc (user + system, the worker processes included): wrk, Redis
and the broker share the cores, so CPU per request is the fair per-core figure.

Then the retrieval row: a 1,000,000-item bundle (``--million``) with statistics for every item
in the same Redis, and requests without candidates (the service retrieves its own: graph rows
of the active clusters, fresh, popular and trending items). The last line is JSON.
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


def build_bundle(root: Path, rng: np.random.Generator, n_items: int = N_ITEMS, version: str = "bench-serve") -> str:
    def unit(x: np.ndarray) -> np.ndarray:
        return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))

    centroids = unit(rng.standard_normal((CLUSTERS, DIM))).astype(np.float32)
    items = unit(rng.standard_normal((n_items, DIM)).astype(np.float32))
    # Each cluster's 100 nearest items, without sorting a million scores per cluster.
    sims = centroids @ items.T
    graph = np.argpartition(-sims, 100, axis=1)[:, :100].astype(np.int32)
    arrays = {
        "item_ids": np.array([f"item-{j}" for j in range(n_items)]),
        "item_emb": items,
        "item_bias": (rng.standard_normal(n_items) * 0.5 - 2.5).astype(np.float32),
        "item_created": np.full(n_items, time.time() - 86400.0),
        "user_ids": np.array([f"user-{u}" for u in range(N_USERS)]),
        "user_emb": unit(rng.standard_normal((N_USERS, DIM))).astype(np.float32),
        "default_user": unit(rng.standard_normal(DIM)).astype(np.float32),
        "centroids": centroids,
        "graph": graph,
        "fresh": rng.choice(n_items, 1000, replace=False).astype(np.int32),
        "popular": rng.choice(n_items, 100, replace=False).astype(np.int32),
    }
    manifest = {
        "dim": DIM,
        "n_items": n_items,
        "n_users": N_USERS,
        "n_clusters": CLUSTERS,
        "k_nearest": 4,
        "temperature": 0.05,
        "prior": {"kind": "two_tower", "scale": 2.0},
        "default_prior": 0.07,
        "data_window": [0, 0],
        "metrics": {"source": "bench-serve"},
    }
    publish(root, version, arrays, manifest)
    return version


def fill_statistics(url: str, version: str, rng: np.random.Generator, n_items: int = N_ITEMS) -> None:
    """Statistics on 8 of the 64 cluster coordinates of every item, and on the pooled one (64)."""
    store = RedisStore.from_url(url, timeout_s=30.0)
    chunk = []
    for j in range(n_items):
        coords = np.append(rng.choice(CLUSTERS, 8, replace=False), CLUSTERS).astype(np.int64)
        chunk.append(ItemDelta(f"item-{j}", 0, 0, coords, rng.random(9) * 20, rng.standard_normal(9)))
        if len(chunk) == 5000:
            store.apply(version, 0, chunk, 3600.0)
            chunk = []
    if chunk:
        store.apply(version, 0, chunk, 3600.0)


def wrk_script(path: Path, rng: np.random.Generator, retrieval: bool = False) -> None:
    """64 request bodies, cycled: each with ``CANDIDATES`` random candidates, or none
    (``retrieval``: the service picks them from its graph, fresh pool and popular list)."""
    bodies = []
    for _ in range(64):
        body: dict[str, object] = {"user_id": f"user-{int(rng.integers(N_USERS))}", "k": 10}
        if not retrieval:
            body["candidates"] = [f"item-{j}" for j in rng.choice(N_ITEMS, CANDIDATES, replace=False)]
        bodies.append(json.dumps(body))
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


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (uvicorn's worker processes),
    from /proc: the server's own cost, whatever else (wrk, Redis) shares the cores."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listed
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        todo += children.get(p, [])
    return total


def run_wrk(port: int, script: Path, seconds: int, connections: int, pid: int | None = None) -> dict[str, float]:
    cpu0 = tree_cpu_s(pid) if pid is not None else 0.0
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
    cpu = tree_cpu_s(pid) - cpu0 if pid is not None else float("nan")
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        # wrk's last in-flight requests are not counted: at 8 connections, a rounding error.
        "cpu_s_per_1k": 1000 * cpu / max(1, raw["requests"]),
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
    parser.add_argument("--workers", type=int, default=1, help="onlinematch serve --workers")
    parser.add_argument("--million", type=int, default=1_000_000, help="items of the retrieval row (0: skip it)")
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


def _serve(env: dict[str, str], bundles: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app.cli", "serve"] + (["--workers", str(workers)] if workers > 1 else [])
    return subprocess.Popen(
        cmd, env={**env, "BUNDLE_DIR": str(bundles), "PORT": str(port)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


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
    env = {**os.environ, "REDIS_URL": redis.url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    server = _serve(env, work / "bundles", ours_port, args.workers)
    procs.append(server)
    bare_proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs.append(bare_proc)
    wait_ready(ours_port, "/readyz")
    wait_ready(bare_port, "/docs")
    for port in (ours_port, bare_port):
        run_wrk(port, script, 3, args.connections)  # warm-up
    ours, bare = [], []
    for i in range(args.repeats):
        ours.append(run_wrk(ours_port, script, args.seconds, args.connections, server.pid))
        bare.append(run_wrk(bare_port, script, args.seconds, args.connections, bare_proc.pid))
        print(f"  run {i + 1}: ours {ours[-1]['rps']:.0f} req/s p99 {ours[-1]['p99_ms']:.1f} ms "
              f"{ours[-1]['cpu_s_per_1k']:.2f} CPU-s/1k | bare {bare[-1]['rps']:.0f} req/s "
              f"p99 {bare[-1]['p99_ms']:.1f} ms {bare[-1]['cpu_s_per_1k']:.2f} CPU-s/1k", flush=True)  # fmt: skip
    server.terminate()
    server.wait(timeout=10)
    procs.remove(server)

    retrieval: dict[str, float] = {}
    if args.million:
        # The retrieval row: no candidates in the request, a catalogue ten times the size, and
        # statistics for every item in the same Redis (its own version namespace).
        t0 = time.perf_counter()
        big = build_bundle(work / "bundles-1m", rng, args.million, "bench-serve-1m")
        fill_statistics(redis.url, big, rng, args.million)
        print(f"set-up: bundle of {args.million} items and their statistics in {time.perf_counter() - t0:.1f}s")
        wrk_script(script, rng, retrieval=True)
        port = free_port()
        big_server = _serve(env, work / "bundles-1m", port, args.workers)
        procs.append(big_server)
        wait_ready(port, "/readyz", timeout_s=300.0)
        run_wrk(port, script, 3, args.connections)
        runs = [run_wrk(port, script, args.seconds, args.connections, big_server.pid) for _ in range(args.repeats)]
        retrieval = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_s_per_1k")}
        print(f"  retrieval at {args.million} items: {retrieval['rps']:.0f} req/s p50 {retrieval['p50_ms']:.1f} ms "
              f"p99 {retrieval['p99_ms']:.1f} ms {retrieval['cpu_s_per_1k']:.2f} CPU-s/1k")  # fmt: skip

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    summary = {
        "rps": round(med(ours, "rps"), 1),
        "p50_ms": round(med(ours, "p50_ms"), 2),
        "p99_ms": round(med(ours, "p99_ms"), 2),
        "cpu_s_per_1k": round(med(ours, "cpu_s_per_1k"), 3),
        "throughput_vs_bare": round(med(ours, "rps") / med(bare, "rps"), 3),
        "cpu_per_request_vs_bare": round(med(ours, "cpu_s_per_1k") / med(bare, "cpu_s_per_1k"), 2),
        "bare_rps": round(med(bare, "rps"), 1),
        "bare_p99_ms": round(med(bare, "p99_ms"), 2),
        "bare_cpu_s_per_1k": round(med(bare, "cpu_s_per_1k"), 3),
        "retrieval_1m_p50_ms": round(retrieval["p50_ms"], 2) if retrieval else None,
        "retrieval_1m_p99_ms": round(retrieval["p99_ms"], 2) if retrieval else None,
        "retrieval_1m_rps": round(retrieval["rps"], 1) if retrieval else None,
        "errors": int(sum(r["errors"] for r in ours + bare)),
        "workers": args.workers,
        "connections": args.connections,
        "candidates": CANDIDATES,
        "items_with_statistics": N_ITEMS,
        "cpu": f"{os.cpu_count()} cores, shared with wrk, Redis and the broker",
    }
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU-s/1k':>9}")
    print(f"{'ours':10} {summary['rps']:>9} {summary['p50_ms']:>8} {summary['p99_ms']:>8} {summary['cpu_s_per_1k']:>9}")
    print(f"{'bare':10} {summary['bare_rps']:>9} {med(bare, 'p50_ms'):>8.2f} {summary['bare_p99_ms']:>8} "
          f"{summary['bare_cpu_s_per_1k']:>9}")  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
