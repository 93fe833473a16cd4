"""``make bench-loop``: the service in a closed loop on real data, over HTTP, on real services.

The world (semi-synthetic, from ``../shared/datasets/movielens-latest-small``):
- **Ground truth**: a rank-32 SVD of all ratings (liked = rating >= 4), calibrated so that a
  random (user, movie) pair is clicked about 1.5% of the time at the top slot and a user's best
  ten about 35% (``click_model``). Position bias: a slot at position k (from 0) is examined
  with probability ``1 / log2(k + 2)``. Users arrive uniformly at random.
- **Training**: ``onlinematch train`` on the ratings before the 80th-percentile timestamp, with
  genres and year as item features. Movies first rated after it are the **fresh** items: the
  bundle knows them by their features only.
- ``--world hits``: halfway through, 30 movies outside the 500 most rated become hits
  overnight (their click logits rise by 3): tastes move, and learning within seconds is what
  the service is for.

Rows, all on the same sequence of users and the same click model:
- the service (``onlinematch serve`` + ``onlinematch consume`` on a real Redis and the Tansu
  broker, fresh for each row) in retrieval mode (no ``candidates``, k = 10), every impression
  and click sent back through ``/v1/feedback``: the default surface, α = 0, and position
  ignored (``position_aware = false``);
- a popularity list, recency-weighted popularity (half-life a tenth of the training span),
  random items, and the oracle (each user's true best ten), none of which learn.

Prints clicks per request by quarter, fresh-item impressions and clicks, latency, and as the
last line JSON with the headline ratios. ``--requests`` (default 10,000) sets the loop length.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.movielens import MOVIELENS
from bench.services import Broker, RedisServer, free_port

K = 10
TOKEN = "bench-loop-token"


@dataclass
class World:
    users: list[str]
    items: list[str]
    logit: np.ndarray  # (U, I) top-slot click logits
    train_counts: np.ndarray  # (I,) ratings before the split
    recency: np.ndarray  # (I,) recency-weighted training counts
    fresh: np.ndarray  # (I,) bool: first rated after the split
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def p(self, user: int, items: np.ndarray, boosted: bool) -> np.ndarray:
        z = self.logit[user, items]
        if boosted and len(self.hits):
            z = z + 3.0 * np.isin(items, self.hits)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def exam(k: int = K) -> np.ndarray:
    return np.asarray(1.0 / np.log2(np.arange(k) + 2.0), dtype=np.float64)


def click_model(score: np.ndarray, random_rate: float = 0.015, top10_rate: float = 0.35) -> np.ndarray:
    """Logits ``a·z + c`` (U, I) with a mean click rate of ``random_rate`` over all pairs and
    ``top10_rate`` over each user's ten best (both at the top slot)."""
    z = (score - score.mean()) / score.std()
    top = np.sort(z, axis=1)[:, -10:]
    # The rates are fitted on a sample of the pairs: the bisection evaluates them ~2,000 times.
    sample = np.random.default_rng(0).choice(z.ravel(), size=min(z.size, 200_000), replace=False)

    def rates(a: float, c: float) -> tuple[float, float]:
        return float((1 / (1 + np.exp(-(a * sample + c)))).mean()), float((1 / (1 + np.exp(-(a * top + c)))).mean())

    a_lo, a_hi = 0.05, 10.0
    c = 0.0
    for _ in range(40):  # top-10 rate is increasing in a, once c matches the random rate
        a = (a_lo + a_hi) / 2
        c_lo, c_hi = -30.0, 5.0
        for _ in range(50):
            c = (c_lo + c_hi) / 2
            c_lo, c_hi = (c, c_hi) if rates(a, c)[0] < random_rate else (c_lo, c)
        a_lo, a_hi = (a, a_hi) if rates(a, c)[1] < top10_rate else (a_lo, a)
    return np.asarray(a * z + c, dtype=np.float64)


def build_world(work: Path, hits: bool, seed: int) -> tuple[World, Path, Path]:
    """The ground truth, and the training files the service is trained on."""
    with (MOVIELENS / "ratings.csv").open() as f:
        rows = [(r["userId"], r["movieId"], float(r["rating"]), float(r["timestamp"])) for r in csv.DictReader(f)]
    with (MOVIELENS / "movies.csv").open() as f:
        movies = list(csv.DictReader(f))
    users = sorted({u for u, *_ in rows}, key=int)
    items = [m["movieId"] for m in movies]
    u_index = {u: n for n, u in enumerate(users)}
    i_index = {i: n for n, i in enumerate(items)}
    liked = np.zeros((len(users), len(items)))
    for u, i, rating, _ in rows:
        liked[u_index[u], i_index[i]] = 1.0 if rating >= 4 else 0.25
    left, s, right = np.linalg.svd(liked, full_matrices=False)
    score = (left[:, :32] * s[:32]) @ right[:32]
    logit = click_model(score)

    ts = np.array([t for *_, t in rows])
    split = float(np.quantile(ts, 0.8))
    train_counts = np.zeros(len(items))
    recency = np.zeros(len(items))
    half_life = (split - ts.min()) / 10
    first_seen = np.full(len(items), np.inf)
    for _, i, _, t in rows:
        j = i_index[i]
        first_seen[j] = min(first_seen[j], t)
        if t < split:
            train_counts[j] += 1
            recency[j] += 0.5 ** ((split - t) / half_life)
    fresh = first_seen >= split

    interactions, items_file = work / "interactions.csv", work / "items.csv"
    with interactions.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "reward"])
        for u, i, rating, t in rows:
            if t < split:
                w.writerow([u, i, int(t), 1.0 if rating >= 4 else 0.0])
    with items_file.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "genres", "year"])
        for m in movies:
            year = re.search(r"\((\d{4})\)\s*$", m["title"])
            w.writerow([m["movieId"], m["genres"], year.group(1) if year else ""])

    world = World(users, items, logit, train_counts, recency, fresh)
    if hits:
        rng = np.random.default_rng(seed + 1)
        tail = np.argsort(-train_counts)[500:]
        world.hits = rng.choice(tail, size=30, replace=False)
    return world, interactions, items_file


@dataclass
class Row:
    name: str
    clicks: list[float] = field(default_factory=list)  # per request
    fresh_impressions: int = 0
    fresh_clicks: int = 0
    latency_ms: list[float] = field(default_factory=list)
    errors: int = 0
    curve: list[float] = field(default_factory=list)  # the service's estimated examination curve

    def quarters(self) -> list[float]:
        c = np.array(self.clicks)
        return [float(q.mean()) for q in np.array_split(c, 4)]


def simulate_clicks(world: World, rng: np.random.Generator, user: int, items: np.ndarray, boosted: bool) -> np.ndarray:
    p = world.p(user, items, boosted) * exam(len(items))
    return np.asarray(rng.random(len(items)) < p)


def fixed_row(name: str, world: World, arrivals: np.ndarray, seed: int, pick: object) -> Row:
    row = Row(name)
    rng = np.random.default_rng(seed)
    for n, user in enumerate(arrivals):
        items = pick(user, rng)  # type: ignore[operator]  # a (user, rng) → (K,) item rows callable
        clicked = simulate_clicks(world, rng, int(user), items, n >= len(arrivals) // 2)
        row.clicks.append(float(clicked.sum()))
        row.fresh_impressions += int(world.fresh[items].sum())
        row.fresh_clicks += int((world.fresh[items] & clicked).sum())
    return row


@contextlib.contextmanager
def service(bundles: Path, env_extra: dict[str, str]) -> Iterator[tuple[httpx.Client, RedisServer]]:
    """Fresh Redis and broker, one ``onlinematch serve`` and one ``onlinematch consume``."""
    redis = RedisServer().start()
    broker = Broker().start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "BUNDLE_DIR": str(bundles),
        "OPERATOR_TOKEN": TOKEN,
        "LOG_LEVEL": "warning",
        "PORT": str(port),
        "FEEDBACK_PARTITIONS": "4",
        **env_extra,
    }
    exe = str(Path(sys.executable).parent / "onlinematch")
    procs = [
        subprocess.Popen([exe, "serve", "--port", str(port), "--bundle-dir", str(bundles)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([exe, "consume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready in 120 s")
            time.sleep(0.5)
        yield client, redis
    finally:
        client.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        redis.cleanup()


def service_row(
    name: str, world: World, arrivals: np.ndarray, seed: int, bundles: Path, surface: dict[str, object]
) -> Row:
    row = Row(name)
    rng = np.random.default_rng(seed)
    item_row = {item: n for n, item in enumerate(world.items)}
    with service(bundles, {}) as (client, _):
        if surface:
            r = client.put("/v1/admin/surfaces/default", json=surface, headers={"Authorization": f"Bearer {TOKEN}"})
            r.raise_for_status()
        for n, user in enumerate(arrivals):
            start = time.perf_counter()
            r = client.post("/v1/recommend", json={"user_id": world.users[user], "k": K})
            row.latency_ms.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                row.errors += 1
                row.clicks.append(0.0)
                continue
            data = r.json()
            served = [i["item_id"] for i in data["items"]]
            items = np.array([item_row[i] for i in served], dtype=np.int64)
            clicked = simulate_clicks(world, rng, int(user), items, n >= len(arrivals) // 2)
            row.clicks.append(float(clicked.sum()))
            row.fresh_impressions += int(world.fresh[items].sum())
            row.fresh_clicks += int((world.fresh[items] & clicked).sum())
            rid = data["request_id"]
            events = [{"event_id": f"{rid}-i{p}", "request_id": rid, "item_id": i, "type": "impression"}
                      for p, i in enumerate(served)]  # fmt: skip
            events += [{"event_id": f"{rid}-c{p}", "request_id": rid, "item_id": served[p], "type": "click"}
                       for p in np.flatnonzero(clicked).tolist()]  # fmt: skip
            f = client.post("/v1/feedback", json={"events": events})
            if f.status_code != 202:
                row.errors += 1
            if (n + 1) % 2000 == 0:
                print(f"  {name}: {n + 1} requests, {np.mean(row.clicks[-2000:]):.3f} clicks/request", flush=True)
        stats = client.get("/v1/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        learnt = stats["surfaces"]["default"].get("learnt") or {}
        row.curve = [float(x) for x in learnt.get("examination", [])]
    return row


def train(bundles: Path, interactions: Path, items: Path) -> Path:
    if (bundles / "current").exists():
        return bundles  # --bundle-cache: trained by an earlier run on the same split
    exe = str(Path(sys.executable).parent / "onlinematch")
    subprocess.run(
        [exe, "train", "--interactions", str(interactions), "--items", str(items), "--out", str(bundles)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return bundles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--world", choices=["stationary", "hits"], default="stationary")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="default,alpha0,position_ignored", help="service rows to run")
    parser.add_argument("--surface", default="{}", help="JSON surface settings applied to every service row first")
    parser.add_argument(
        "--bundle-cache", type=Path, help="keep the trained bundle here and reuse it (the split is fixed by the data)"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="om-bench-loop-"))
    try:
        started = time.monotonic()
        world, interactions, items = build_world(work, args.world == "hits", args.seed)
        bundles = train(args.bundle_cache or work / "bundles", interactions, items)
        print(f"world: {len(world.users)} users, {len(world.items)} items ({int(world.fresh.sum())} fresh), "
              f"trained in {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        arrivals = np.random.default_rng(args.seed).integers(0, len(world.users), args.requests)

        popular = np.argsort(-world.train_counts, kind="stable")[:K]
        recent = np.argsort(-world.recency, kind="stable")[:K]
        rows = [
            fixed_row("popularity", world, arrivals, args.seed, lambda u, rng: popular),
            fixed_row("recency popularity", world, arrivals, args.seed, lambda u, rng: recent),
            fixed_row("random", world, arrivals, args.seed, lambda u, rng: rng.choice(len(world.items), K, False)),
            fixed_row("oracle", world, arrivals, args.seed, lambda u, rng: np.argsort(-world.logit[u])[:K]),
        ]
        surfaces: dict[str, dict[str, object]] = {
            "default": {},
            "alpha0": {"alpha": 0.0},
            "position_ignored": {"position_aware": False},
        }
        base = json.loads(args.surface)
        for name in args.rows.split(","):
            rows.append(service_row(f"service {name}", world, arrivals, args.seed, bundles, {**base, **surfaces[name]}))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nclicks per request by quarter ({args.requests} requests, world {args.world})")
    print(f"{'row':28s} {'Q1':>7s} {'Q2':>7s} {'Q3':>7s} {'Q4':>7s} {'fresh imp':>10s} {'fresh clk':>10s} errors")
    by_name = {r.name: r for r in rows}
    for r in rows:
        q = r.quarters()
        print(f"{r.name:28s} " + " ".join(f"{x:7.3f}" for x in q)
              + f" {r.fresh_impressions:10d} {r.fresh_clicks:10d} {r.errors:6d}")  # fmt: skip
    for r in rows:
        if r.curve:
            error = float(np.abs(np.array(r.curve) - exam(len(r.curve))).max())
            print(f"{r.name}: examination estimated " + " ".join(f"{x:.3f}" for x in r.curve))
            print(f"{'':{len(r.name)}s}  true                " + " ".join(f"{x:.3f}" for x in exam(len(r.curve)))
                  + f"   (largest error {error:.3f})")  # fmt: skip
    default = by_name.get("service default")
    result: dict[str, float | str] = {"world": args.world, "requests": args.requests}
    if default is not None:
        lat = np.array(default.latency_ms)
        print(f"\nservice default latency: p50 {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
        last = default.quarters()[3]
        result |= {
            "last_quarter_clicks": round(last, 4),
            "vs_popularity": round(last / by_name["popularity"].quarters()[3], 3),
            "vs_recency_popularity": round(last / by_name["recency popularity"].quarters()[3], 3),
            "learning_gain": round(last / default.quarters()[0], 3),
            "p50_ms": round(float(np.median(lat)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
        }
        if "service alpha0" in by_name:
            a0 = by_name["service alpha0"]
            result["vs_alpha0"] = round(last / a0.quarters()[3], 3)
            result["fresh_clicks_vs_alpha0"] = round(default.fresh_clicks / max(a0.fresh_clicks, 1), 3)
        if default.curve:
            gap = np.abs(np.array(default.curve) - exam(len(default.curve)))
            result["curve_max_error"] = round(float(gap.max()), 4)
        if "service position_ignored" in by_name:
            result["vs_position_ignored"] = round(last / by_name["service position_ignored"].quarters()[3], 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
