"""``make bench-loop``: the service in a closed loop on real data, over HTTP, on real services.

The world (semi-synthetic, from ``../shared/datasets/movielens-latest-small``):
- **Ground truth**: a rank-32 SVD of all ratings (liked = rating >= 4), calibrated so that a
  random (user, movie) pair is clicked about 1.5% of the time at the top slot and a user's best
  ten about 35% (``click_model``). Position bias: a slot at position k (from 0) is examined
  with probability ``1 / log2(k + 2)``. Users arrive uniformly at random.
- **Training**: ``onlinematch train`` on the ratings before the 80th-percentile timestamp, with
  genres and year as item features. Movies first rated after it are the **fresh** items: the
  bundle knows them by their features only.
- ``--world drift``: halfway through, every user's tastes move halfway towards another user's
  (her click logits become the mean of hers and theirs; the oracle follows).
- ``--world hits``: halfway through, 30 movies outside the 500 most rated become hits
  overnight (their click logits rise by 3; the oracle follows, and each row counts its
  impressions and clicks of the hits): tastes move, and learning within seconds is what the
  service is for. With the hits a user's best ten hold five of them on average, and the oracle
  rises from 1.69 to 1.97 clicks per request. ``--hits-from mid``: the hits are movies ranked
  50-500 by ratings instead, which the bundle knows and shows now and then.

Rows, all on the same sequence of users and the same click model:
- the service (``onlinematch serve`` + ``onlinematch consume`` on a real Redis and the Tansu
  broker, fresh for each row) in retrieval mode (no ``candidates``, k = 10), every impression
  and click sent back through ``/v1/feedback``: the default surface, α = 0, and position
  ignored (``position_aware = false``), and (``--rows``) without the fold-in of each user's clicks
  (``no_fold_in``);
- a popularity list, recency-weighted popularity (half-life a tenth of the training span),
  random items, and the oracle (each user's true best ten), none of which learn.

The live catalogue (``make bench-catalogue``):
- ``--announce F``: a seeded fraction F of the movies with training ratings is held back from
  training (their rows in the items file and their ratings); the ground truth still has them.
  At the start of Q2 each service row publishes them through ``PUT /v1/items`` (alternating
  replicas), and measures, per item, the time from the PUT to the first answer of the other
  replica that knows it (``unknown_candidates == 0``: servable) and to its first impression in
  the loop. The oracle ranks over the items not held back until then, over all after. The row
  ``withheld`` is ``default`` without the PUTs.
- ``--takedown N``: halfway, each service row takes down N items it served often: those ranked
  after its ``TAKEDOWN_SKIP`` most served (``DELETE /v1/items``, alternating replicas), and
  counts the impressions of them in answers to requests sent after the acknowledgement: the
  service promises none, on any replica. Not the very top: on MovieLens the 20 most served
  items drew ~88% of all impressions, so taking them down measured the loss of the loop's best
  items and swamped every other comparison in Q3 and Q4.
- ``--replicas R``: R ``onlinematch serve`` processes on one Redis and broker; requests go round
  robin, each one's feedback to the replica that served it.

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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.movielens import MOVIELENS
from bench.services import Broker, RedisServer, free_port

K = 10
TAKEDOWN_SKIP = 20  # --takedown spares the most served items (see the module docstring)
TOKEN = "bench-loop-token"
EDITOR_TOKEN = "bench-loop-editor-token"
# A replica caches surface settings this long (Settings.surface_cache_s): a change made through
# one replica reaches the others after it.
SURFACE_CACHE_S = 1.0
SERVABLE_TIMEOUT_S = 10.0


@dataclass
class World:
    users: list[str]
    items: list[str]
    logit: np.ndarray  # (U, I) top-slot click logits
    train_counts: np.ndarray  # (I,) ratings before the split
    recency: np.ndarray  # (I,) recency-weighted training counts
    fresh: np.ndarray  # (I,) bool: first rated after the split
    held: np.ndarray  # (I,) bool: held back from training, announced mid-run (--announce)
    features: dict[str, dict[str, str]]  # item id → its columns in the items file
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    drifted: np.ndarray | None = None  # (U, I) the logits from halfway (--world drift)

    def p(self, user: int, items: np.ndarray, boosted: bool) -> np.ndarray:
        z = self.logit[user, items] if not boosted or self.drifted is None else self.drifted[user, items]
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


def build_world(
    work: Path, hits: bool, seed: int, announce: float = 0.0, drift: bool = False, hits_from: str = "tail"
) -> tuple[World, Path, Path]:
    """The ground truth, and the training files the service is trained on (without the
    ``announce`` fraction of the movies with training ratings)."""
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
    held = np.zeros(len(items), dtype=bool)
    if announce > 0:
        rated = np.flatnonzero(train_counts > 0)
        rng = np.random.default_rng(seed + 2)
        held[rng.choice(rated, size=round(announce * len(rated)), replace=False)] = True
    features = {}
    for m in movies:
        year = re.search(r"\((\d{4})\)\s*$", m["title"])
        features[m["movieId"]] = {"genres": m["genres"], "year": year.group(1) if year else ""}

    interactions, items_file = work / "interactions.csv", work / "items.csv"
    with interactions.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "reward"])
        for u, i, rating, t in rows:
            if t < split and not held[i_index[i]]:
                w.writerow([u, i, int(t), 1.0 if rating >= 4 else 0.0])
    with items_file.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "genres", "year"])
        for n, item in enumerate(items):
            if not held[n]:
                w.writerow([item, features[item]["genres"], features[item]["year"]])

    world = World(users, items, logit, train_counts, recency, fresh, held, features)
    if hits:
        rng = np.random.default_rng(seed + 1)
        # "tail": outside the 500 most rated, where the bundle knows most by a handful of
        # ratings or none; "mid": ranks 50-500, items the model knows and shows now and then.
        by_count = np.argsort(-train_counts)
        world.hits = rng.choice(by_count[500:] if hits_from == "tail" else by_count[50:500], size=30, replace=False)
    if drift:
        # Each user's tastes move halfway towards another user's (a seeded permutation): what
        # the bundle learnt of her is half wrong from then on, and only her clicks say how.
        other = np.random.default_rng(seed + 3).permutation(len(users))
        world.drifted = 0.5 * (logit + logit[other])
    return world, interactions, items_file


@dataclass
class Catalogue:
    """A service row's changes to the live catalogue, and what they measured. Times are
    ``time.perf_counter()`` readings of this process."""

    announce_at: int = -1  # request index before which the held-back items were PUT
    servable_ms: list[float] = field(default_factory=list)  # per item: PUT sent → another replica knows it
    not_servable: int = 0  # PUT acknowledged, but unknown to the probed replica after SERVABLE_TIMEOUT_S
    put_ack: dict[str, float] = field(default_factory=dict)
    first_shown: dict[str, tuple[float, int]] = field(default_factory=dict)  # item → (s after ack, requests after)
    down_ack: dict[str, float] = field(default_factory=dict)
    shown_before: int = 0  # impressions of the taken-down items before their take-down
    after_ack: list[tuple[int, int, str, float]] = field(default_factory=list)  # (request, replica, item, s after ack)
    failures: list[str] = field(default_factory=list)  # PUTs and DELETEs not acknowledged, with the answer

    def observe(self, n: int, replica: int, sent: float, received: float, served: list[str]) -> None:
        for item in served:
            ack = self.put_ack.get(item)
            if ack is not None and item not in self.first_shown:
                self.first_shown[item] = (received - ack, n - self.announce_at)
            down = self.down_ack.get(item)
            if down is not None and sent > down:
                self.after_ack.append((n, replica, item, sent - down))


@dataclass
class Row:
    name: str
    clicks: list[float] = field(default_factory=list)  # per request
    announced_clicks: list[float] = field(default_factory=list)  # per request, on items held back from training
    announced_shown: list[float] = field(default_factory=list)  # per request, impressions of them
    fresh_impressions: int = 0
    fresh_clicks: int = 0
    hit_impressions: int = 0  # --world hits: impressions of the hits from halfway on
    hit_clicks: int = 0
    latency_ms: list[float] = field(default_factory=list)
    errors: int = 0
    curve: list[float] = field(default_factory=list)  # the service's estimated examination curve
    catalogue: Catalogue | None = None

    def quarters(self) -> list[float]:
        c = np.array(self.clicks)
        return [float(q.mean()) for q in np.array_split(c, 4)]

    def count(self, world: World, items: np.ndarray, clicked: np.ndarray, boosted: bool) -> None:
        """Add one slate's fresh (and, once the hits are on, hit) impressions and clicks."""
        self.fresh_impressions += int(world.fresh[items].sum())
        self.fresh_clicks += int((world.fresh[items] & clicked).sum())
        if boosted and len(world.hits):
            hit = np.isin(items, world.hits)
            self.hit_impressions += int(hit.sum())
            self.hit_clicks += int((hit & clicked).sum())

    def announced_share(self, quarter: int = 3) -> float:
        """Clicks on held-back items over all clicks, in one quarter of the loop."""
        clicks = float(np.array_split(np.array(self.clicks), 4)[quarter].sum())
        announced = float(np.array_split(np.array(self.announced_clicks), 4)[quarter].sum())
        return announced / clicks if clicks else 0.0

    def announced_impressions(self, quarter: int = 3) -> int:
        return int(np.array_split(np.array(self.announced_shown), 4)[quarter].sum())


def simulate_clicks(world: World, rng: np.random.Generator, user: int, items: np.ndarray, boosted: bool) -> np.ndarray:
    p = world.p(user, items, boosted) * exam(len(items))
    return np.asarray(rng.random(len(items)) < p)


Pick = Callable[[int, int, np.random.Generator], np.ndarray]  # (request index, user, rng) → (K,) item rows


def fixed_row(name: str, world: World, arrivals: np.ndarray, seed: int, pick: Pick) -> Row:
    row = Row(name)
    rng = np.random.default_rng(seed)
    for n, user in enumerate(arrivals):
        items = pick(n, int(user), rng)
        clicked = simulate_clicks(world, rng, int(user), items, n >= len(arrivals) // 2)
        row.clicks.append(float(clicked.sum()))
        row.announced_clicks.append(float((world.held[items] & clicked).sum()))
        row.announced_shown.append(float(world.held[items].sum()))
        row.count(world, items, clicked, n >= len(arrivals) // 2)
    return row


@contextlib.contextmanager
def service(
    bundles: Path, env_extra: dict[str, str], replicas: int = 1
) -> Iterator[tuple[list[httpx.Client], RedisServer]]:
    """Fresh Redis and broker, ``replicas`` × ``onlinematch serve`` and one ``onlinematch consume``;
    a client per replica, each ready."""
    redis = RedisServer().start()
    broker = Broker().start()
    ports: list[int] = []
    while len(ports) < replicas:  # free_port may hand out a port twice in a row
        if (port := free_port()) not in ports:
            ports.append(port)
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "BUNDLE_DIR": str(bundles),
        "OPERATOR_TOKEN": TOKEN,
        "LOG_LEVEL": "warning",
        "PORT": str(ports[0]),
        "FEEDBACK_PARTITIONS": "4",
        **env_extra,
    }
    exe = str(Path(sys.executable).parent / "onlinematch")
    procs = [
        subprocess.Popen([exe, "serve", "--port", str(port), "--bundle-dir", str(bundles)],
                         env={**env, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports
    ]  # fmt: skip
    procs.append(subprocess.Popen([exe, "consume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) for port in ports]
    try:
        deadline = time.monotonic() + 120
        for client in clients:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{client.base_url} did not become ready in 120 s")
                time.sleep(0.5)
        yield clients, redis
    finally:
        for client in clients:
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


EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}


def publish(clients: list[httpx.Client], world: World, items: list[str], cat: Catalogue) -> int:
    """PUT each item (alternating replicas), then ask the next replica about it until it knows
    it; the number of PUTs not acknowledged."""
    errors = 0
    for j, item in enumerate(items):
        editor, probe = clients[j % len(clients)], clients[(j + 1) % len(clients)]
        sent = time.perf_counter()
        body = {"features": world.features[item], "created_at": time.time()}
        r = editor.put(f"/v1/items/{item}", json=body, headers=EDITOR)
        if r.status_code != 200 or r.json()["state"] != "live":
            errors += 1
            cat.failures.append(f"PUT {item} on replica {j % len(clients)}: {r.status_code} {r.text[:300]}")
            continue
        cat.put_ack[item] = ack = time.perf_counter()
        while True:
            p = probe.post("/v1/recommend", json={"user_id": world.users[0], "k": 1, "candidates": [item]})
            if p.status_code == 200 and p.json()["unknown_candidates"] == 0:
                cat.servable_ms.append((time.perf_counter() - sent) * 1000)
                break
            if time.perf_counter() - ack > SERVABLE_TIMEOUT_S:
                cat.not_servable += 1
                break
    return errors


def take_down(clients: list[httpx.Client], items: list[str], cat: Catalogue, shown: Counter[str]) -> int:
    """DELETE each item (alternating replicas); the number not acknowledged."""
    errors = 0
    for j, item in enumerate(items):
        r = clients[j % len(clients)].delete(f"/v1/items/{item}", headers=EDITOR)
        if r.status_code != 200 or r.json()["state"] != "deleted":
            errors += 1
            cat.failures.append(f"DELETE {item} on replica {j % len(clients)}: {r.status_code} {r.text[:300]}")
            continue
        cat.down_ack[item] = time.perf_counter()
        cat.shown_before += shown[item]
    return errors


def service_row(
    name: str,
    world: World,
    arrivals: np.ndarray,
    seed: int,
    bundles: Path,
    surface: dict[str, object],
    announce: list[str] | None = None,
    takedown: int = 0,
    replicas: int = 1,
) -> Row:
    """``announce``: item ids to PUT at the start of Q2; ``takedown``: how many of the most
    served items to DELETE halfway."""
    row = Row(name)
    rng = np.random.default_rng(seed)
    # Announced items are not in the bundle, but the world has them like any other.
    item_row = {item: n for n, item in enumerate(world.items)}
    cat = row.catalogue = Catalogue() if world.held.any() or takedown else None
    shown: Counter[str] = Counter()
    with service(bundles, {"EDITOR_TOKEN": EDITOR_TOKEN}, replicas) as (clients, _):
        if surface:
            r = clients[0].put("/v1/admin/surfaces/default", json=surface, headers={"Authorization": f"Bearer {TOKEN}"})
            r.raise_for_status()
            if len(clients) > 1:
                time.sleep(SURFACE_CACHE_S + 0.2)
        for n, user in enumerate(arrivals):
            if cat is not None and announce and n == len(arrivals) // 4:
                cat.announce_at = n
                row.errors += publish(clients, world, announce, cat)
            if cat is not None and takedown and n == len(arrivals) // 2:
                ranked = [i for i, _ in shown.most_common(TAKEDOWN_SKIP + takedown)][TAKEDOWN_SKIP:]
                row.errors += take_down(clients, ranked, cat, shown)
            replica = n % len(clients)
            client = clients[replica]
            start = time.perf_counter()
            r = client.post("/v1/recommend", json={"user_id": world.users[user], "k": K})
            end = time.perf_counter()
            row.latency_ms.append((end - start) * 1000)
            if r.status_code != 200:
                row.errors += 1
                row.clicks.append(0.0)
                row.announced_clicks.append(0.0)
                row.announced_shown.append(0.0)
                continue
            data = r.json()
            served = [i["item_id"] for i in data["items"]]
            items = np.array([item_row[i] for i in served], dtype=np.int64)
            clicked = simulate_clicks(world, rng, int(user), items, n >= len(arrivals) // 2)
            row.clicks.append(float(clicked.sum()))
            row.announced_clicks.append(float((world.held[items] & clicked).sum()))
            row.announced_shown.append(float(world.held[items].sum()))
            row.count(world, items, clicked, n >= len(arrivals) // 2)
            shown.update(served)
            if cat is not None:
                cat.observe(n, replica, start, end, served)
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
        stats = clients[0].get("/v1/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        learnt = stats["surfaces"]["default"].get("learnt") or {}
        if surface.get("position_aware", True):  # else the service shows its unlearnt starting curve
            row.curve = [float(x) for x in learnt.get("examination", [])]
    return row


def percentiles(xs: list[float]) -> tuple[float, float]:
    """(p50, p99), NaN for none."""
    if not xs:
        return float("nan"), float("nan")
    return float(np.median(xs)), float(np.percentile(xs, 99))


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


def catalogue_report(
    rows: list[Row], by_name: dict[str, Row], requests: int, held: int, takedown: int, replicas: int
) -> dict[str, float | str]:
    """Print the live-catalogue figures; the ones for the JSON line."""
    result: dict[str, float | str] = {"replicas": replicas}
    service_rows = [r for r in rows if r.catalogue is not None]
    print(f"\nlive catalogue ({replicas} replica{'s' if replicas > 1 else ''})")
    if held:
        print(f"{held} items held back from training, announced before request {requests // 4}")
        oracle = by_name["oracle"]
        oracle_share = oracle.announced_share()
        for r in service_rows:
            cat = r.catalogue
            assert cat is not None
            share = (
                f"Q4 announced items: click share {r.announced_share():.4f} (oracle {oracle_share:.4f}), "
                f"{r.announced_impressions()} impressions (oracle {oracle.announced_impressions()})"
            )
            if not cat.put_ack:
                print(f"  {r.name}: not announced; {share}")
                continue
            s50, s99 = percentiles(cat.servable_ms)
            f50, f99 = percentiles([s for s, _ in cat.first_shown.values()])
            n50, n99 = percentiles([float(n) for _, n in cat.first_shown.values()])
            never = len(cat.put_ack) - len(cat.first_shown)
            print(
                f"  {r.name}: PUT → servable on another replica p50 {s50:.1f} ms, p99 {s99:.1f} ms"
                f" ({cat.not_servable} not within {SERVABLE_TIMEOUT_S:.0f} s)"
            )
            print(
                f"  {'':{len(r.name)}s}  ack → first impression p50 {f50:.2f} s, p99 {f99:.2f} s"
                f" (p50 {n50:.0f}, p99 {n99:.0f} requests); {never} of {len(cat.put_ack)} never shown"
            )
            print(f"  {'':{len(r.name)}s}  {share}")  # fmt: skip
        default = by_name.get("service default")
        if default is not None and default.catalogue is not None and default.catalogue.put_ack:
            cat = default.catalogue
            s50, s99 = percentiles(cat.servable_ms)
            f50, f99 = percentiles([s for s, _ in cat.first_shown.values()])
            result |= {
                "announced_items": len(cat.put_ack),
                "put_servable_p50_ms": round(s50, 1),
                "put_servable_p99_ms": round(s99, 1),
                "put_first_impression_p50_s": round(f50, 2),
                "put_first_impression_p99_s": round(f99, 2),
                "announced_never_shown": len(cat.put_ack) - len(cat.first_shown),
                "announced_share_q4": round(default.announced_share(), 4),
                "oracle_announced_share_q4": round(oracle_share, 4),
                "announced_share_vs_oracle": round(default.announced_share() / oracle_share, 3)
                if oracle_share
                else 0.0,
            }
            if "service withheld" in by_name:
                result["vs_withheld"] = round(default.quarters()[3] / by_name["service withheld"].quarters()[3], 3)
                print(f"Q4 clicks/request: service default {default.quarters()[3]:.3f}, "
                      f"service withheld {by_name['service withheld'].quarters()[3]:.3f} "
                      f"(ratio {result['vs_withheld']})")  # fmt: skip
    if takedown:
        print(
            f"{takedown} often served items (after the {TAKEDOWN_SKIP} most) taken down before request {requests // 2}"
        )
        after = before = 0
        for r in service_rows:
            cat = r.catalogue
            assert cat is not None
            after, before = after + len(cat.after_ack), before + cat.shown_before
            print(f"  {r.name}: {len(cat.down_ack)} acknowledged, {cat.shown_before} impressions before, "
                  f"{len(cat.after_ack)} in answers to requests sent after the acknowledgement")  # fmt: skip
            for n, replica, item, late in cat.after_ack[:10]:
                print(f"    request {n} on replica {replica}: item {item}, sent {late:.3f} s after the DELETE ack")
        result |= {"takedown_impressions_after_ack": after, "takedown_impressions_before": before}
    for r in service_rows:
        assert r.catalogue is not None
        for failure in r.catalogue.failures[:10]:
            print(f"  {r.name}: not acknowledged: {failure}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--world", choices=["stationary", "hits", "drift"], default="stationary")
    parser.add_argument(
        "--hits-from", choices=["tail", "mid"], default="tail", help="--world hits: where the hits come from"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="default,alpha0,position_ignored", help="service rows to run")
    parser.add_argument("--surface", default="{}", help="JSON surface settings applied to every service row first")
    parser.add_argument(
        "--bundle-cache", type=Path, help="keep the trained bundle here and reuse it (the split is fixed by the data)"
    )
    parser.add_argument("--announce", type=float, default=0.0, help="fraction of rated movies held back, PUT in Q2")
    parser.add_argument("--takedown", type=int, default=0, help="DELETE this many most served items halfway")
    parser.add_argument("--replicas", type=int, default=1, help="onlinematch serve processes per service row")
    args = parser.parse_args(argv)
    if not 0.0 <= args.announce < 1.0 or args.takedown < 0 or args.replicas < 1:
        parser.error("--announce is in [0, 1), --takedown ≥ 0, --replicas ≥ 1")
    cache: Path | None = args.bundle_cache
    if cache is not None and args.announce > 0:
        # The held-back items depend on the fraction and the seed: one bundle per pair.
        cache = cache.with_name(f"{cache.name}-announce{args.announce:g}-seed{args.seed}")

    work = Path(tempfile.mkdtemp(prefix="om-bench-loop-"))
    try:
        started = time.monotonic()
        world, interactions, items = build_world(
            work, args.world == "hits", args.seed, args.announce, drift=args.world == "drift", hits_from=args.hits_from
        )
        bundles = train(cache or work / "bundles", interactions, items)
        held = f", {int(world.held.sum())} held back" if world.held.any() else ""
        print(f"world: {len(world.users)} users, {len(world.items)} items ({int(world.fresh.sum())} fresh{held}), "
              f"trained in {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        arrivals = np.random.default_rng(args.seed).integers(0, len(world.users), args.requests)

        popular = np.argsort(-world.train_counts, kind="stable")[:K]
        recent = np.argsort(-world.recency, kind="stable")[:K]
        hidden = np.where(world.held, -np.inf, world.logit)  # the oracle before the announcement

        boosted = world.logit.copy()
        boosted[:, world.hits] += 3.0  # World.p: the hits from halfway (--world hits)

        def oracle(n: int, u: int, rng: np.random.Generator) -> np.ndarray:
            if world.drifted is not None and n >= args.requests // 2:
                return np.argsort(-world.drifted[u])[:K]
            if len(world.hits) and n >= args.requests // 2:
                return np.argsort(-boosted[u])[:K]
            return np.argsort(-(world.logit[u] if n >= args.requests // 4 else hidden[u]))[:K]

        rows = [
            fixed_row("popularity", world, arrivals, args.seed, lambda n, u, rng: popular),
            fixed_row("recency popularity", world, arrivals, args.seed, lambda n, u, rng: recent),
            fixed_row("random", world, arrivals, args.seed, lambda n, u, rng: rng.choice(len(world.items), K, False)),
            fixed_row("oracle", world, arrivals, args.seed, oracle),
        ]
        surfaces: dict[str, dict[str, object]] = {
            "default": {},
            "alpha0": {"alpha": 0.0},
            "position_ignored": {"position_aware": False},
            "no_fold_in": {"fold_in_clicks": 0},  # the user's clicks never move her embedding
            "withheld": {},  # default, but the held-back items are never announced
        }
        base = json.loads(args.surface)
        announced = [world.items[i] for i in np.flatnonzero(world.held)]
        for name in args.rows.split(","):
            rows.append(service_row(
                f"service {name}", world, arrivals, args.seed, bundles, {**base, **surfaces[name]},
                announce=announced if name != "withheld" else None, takedown=args.takedown, replicas=args.replicas,
            ))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nclicks per request by quarter ({args.requests} requests, world {args.world})")
    hits = "   hit imp    hit clk" if len(world.hits) else ""
    print(f"{'row':28s} {'Q1':>7s} {'Q2':>7s} {'Q3':>7s} {'Q4':>7s} {'fresh imp':>10s} {'fresh clk':>10s}{hits} errors")
    by_name = {r.name: r for r in rows}
    for r in rows:
        q = r.quarters()
        counts = f" {r.hit_impressions:10d} {r.hit_clicks:10d}" if hits else ""
        print(f"{r.name:28s} " + " ".join(f"{x:7.3f}" for x in q)
              + f" {r.fresh_impressions:10d} {r.fresh_clicks:10d}{counts} {r.errors:6d}")  # fmt: skip
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
        if len(world.hits):
            result |= {"hit_impressions": default.hit_impressions, "hit_clicks": default.hit_clicks}
            if "service alpha0" in by_name:
                a0_hits = by_name["service alpha0"].hit_clicks
                result["hit_clicks_vs_alpha0"] = round(default.hit_clicks / max(a0_hits, 1), 3)
        if default.curve:
            gap = np.abs(np.array(default.curve) - exam(len(default.curve)))
            result["curve_max_error"] = round(float(gap.max()), 4)
        if "service position_ignored" in by_name:
            result["vs_position_ignored"] = round(last / by_name["service position_ignored"].quarters()[3], 3)
        if "service no_fold_in" in by_name:
            result["vs_no_fold_in"] = round(last / by_name["service no_fold_in"].quarters()[3], 3)
    if args.announce > 0 or args.takedown > 0:
        result |= catalogue_report(rows, by_name, args.requests, int(world.held.sum()), args.takedown, args.replicas)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
