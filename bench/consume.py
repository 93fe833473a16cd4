"""``make bench-consume``: the feedback consumer against the raw client, and freshness.

1. Throughput: ``--events`` feedback events (80% impressions, 20% clicks, over 50,000 stored
   request contexts and 20,000 items) are produced to a real Kafka-protocol broker; one
   ``FeedbackConsumer`` applies them to a real Redis. Baseline in the same run: kafka-python
   consuming and JSON-decoding the same topic (the benchmark talks to kafka-python directly for
   that, since the raw client is what is measured).
2. Freshness: a running ``onlinematch serve`` plus a consumer; each probe posts a click and
   polls ``/v1/recommend`` until the item's score moves: produce → visible, in milliseconds.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson

from app.demo import build_world_bundle
from bandits.world import World, WorldConfig
from bench.serve import wait_ready
from bench.services import Broker, RedisServer, free_port, real_services
from streaming.bus import Message
from streaming.consumer import FeedbackConsumer
from streaming.events import FeedbackEvent, RequestContext
from streaming.kafka_bus import KafkaBus
from streaming.redis_store import RedisStore

PARTITIONS = 8
TOKEN = "bench-token"


def produce_events(bus: KafkaBus, store: RedisStore, topic: str, n_events: int, rng: np.random.Generator) -> None:
    n_requests = max(1, n_events // 4)
    contexts = []
    for r in range(n_requests):
        items = {
            f"item-{j}": (round(float(rng.random()) * 0.2, 4), False) for j in rng.choice(20_000, 4, replace=False)
        }
        idx = sorted(rng.choice(64, 4, replace=False).tolist())
        contexts.append(RequestContext(f"req-{r}", "bench", "v1", idx, rng.dirichlet(np.ones(4)).tolist(), items, 0.0))
    for ctx in contexts:
        store.put_context(ctx, 3600.0)
    producer = bus.producer()
    batch: list[Message] = []
    made = 0
    while made < n_events:
        ctx = contexts[made // 4 % n_requests]
        item = list(ctx.items)[made % 4]
        kind = "click" if rng.random() < 0.2 else "impression"
        ev = FeedbackEvent(uuid.uuid4().hex, ctx.request_id, item, kind, 1.0, time.time())  # type: ignore[arg-type]  # a literal
        batch.append(Message(topic, item.encode(), ev.encode()))
        made += 1
        if len(batch) == 10_000:
            producer.send_and_wait(batch, 60.0)
            batch = []
    if batch:
        producer.send_and_wait(batch, 60.0)
    producer.close()


def raw_rate(bootstrap: str, topic: str, n_events: int) -> float:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=5000,
        fetch_max_wait_ms=50,
    )
    seen, start = 0, None
    deadline = time.monotonic() + 300
    while seen < n_events and time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=500, max_records=5000).values():
            if start is None:
                start = time.perf_counter()
            for m in msgs:
                orjson.loads(m.value)
            seen += len(msgs)
    consumer.close()
    assert start is not None and seen >= n_events, f"raw consumer saw {seen} of {n_events}"
    return seen / (time.perf_counter() - start)


def our_rate(bus: KafkaBus, store: RedisStore, topic: str, n_events: int) -> tuple[float, FeedbackConsumer]:
    consumer = FeedbackConsumer(
        bus, store, group=f"ours-{uuid.uuid4().hex[:6]}", feedback_topic=topic, dead_letter_topic=topic + "-dlq"
    )
    start = None
    deadline = time.monotonic() + 600
    while consumer.stats.events < n_events and time.monotonic() < deadline:
        got = consumer.run_once()
        if got and start is None:
            start = time.perf_counter() - consumer.stats.last_apply_s
    consumer.close()
    assert start is not None and consumer.stats.events >= n_events, (
        f"consumer applied {consumer.stats.events} of {n_events}"
    )
    return consumer.stats.events / (time.perf_counter() - start), consumer


def freshness(redis: RedisServer, broker: Broker, work: Path, probes: int) -> list[float]:
    np.seterr(over="ignore")
    world = World(WorldConfig(n_users=500, n_clusters=16, n_items=500, n_fresh=50, horizon=10, seed=5))
    build_world_bundle(work / "bundles", world, "fresh-1")
    tag = uuid.uuid4().hex[:6]
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "BUNDLE_DIR": str(work / "bundles"),
        "PORT": str(port),
        "OPERATOR_TOKEN": TOKEN,
        "FEEDBACK_TOPIC": f"fb-{tag}",
        "DECISIONS_TOPIC": f"dec-{tag}",
        "CONSUMER_GROUP": f"fresh-{tag}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    consumer = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "consume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latencies: list[float] = []
    try:
        wait_ready(port, "/readyz")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5.0) as client:
            # Without calibration: the probes only ever click, so the surface's calibration
            # learns a click rate of 1, the prior reaches 1 by the tenth probe, and a score at 1
            # cannot move. Freshness is the residual's time to visible, not the calibration's.
            r = client.put(
                "/v1/admin/surfaces/fresh",
                json={"explore_traffic": 0.0, "calibrate": False},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            r.raise_for_status()
            time.sleep(4.0)  # the consumer joins its group
            for n in range(probes):
                item = f"item-{n % 500}"
                ask = {
                    "user_id": f"user-{n % 500}",
                    "k": 3,
                    "surface": "fresh",
                    "candidates": [item, "item-998", "item-999"],
                }
                rec = client.post("/v1/recommend", json=ask).json()
                before = next(i["score"] for i in rec["items"] if i["item_id"] == item)
                sent = time.perf_counter()
                event = {"event_id": f"p{n}", "request_id": rec["request_id"], "item_id": item, "type": "click"}
                client.post("/v1/feedback", json={"events": [event]}).raise_for_status()
                while True:
                    now = client.post("/v1/recommend", json=ask).json()
                    score = next(i["score"] for i in now["items"] if i["item_id"] == item)
                    if score > before + 1e-9:
                        latencies.append((time.perf_counter() - sent) * 1000)
                        break
                    if time.perf_counter() - sent > 30:
                        raise RuntimeError(f"probe {n}: the click never became visible")
                    time.sleep(0.005)
    finally:
        for p in (server, consumer):
            p.terminate()
            p.wait(timeout=15)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--probes", type=int, default=100)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with real_services("om-bench-consume-") as (redis, broker, work):
        bus = KafkaBus(broker.bootstrap, 10.0)
        store = RedisStore.from_url(redis.url, 10.0)
        topic = f"feedback-{uuid.uuid4().hex[:6]}"
        bus.ensure_topics({topic: PARTITIONS, topic + "-dlq": 1})
        t0 = time.perf_counter()
        produce_events(bus, store, topic, args.events, rng)
        print(f"produced {args.events} events in {time.perf_counter() - t0:.1f}s", flush=True)
        raw = raw_rate(broker.bootstrap, topic, args.events)
        print(f"raw kafka-python consume+decode: {raw:,.0f} events/s", flush=True)
        ours, consumer = our_rate(bus, store, topic, args.events)
        print(f"onlinematch consumer (join, credit, sum, apply to Redis, commit): {ours:,.0f} events/s", flush=True)
        print(f"  outcomes: {dict(consumer.stats.counts)}", flush=True)
        lat = freshness(redis, broker, work, args.probes)
        p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        print(
            f"freshness over {len(lat)} probes: p50 {p50:.0f} ms, p99 {p99:.0f} ms (max {max(lat):.0f} ms)", flush=True
        )
        print(json.dumps({
            "events_per_s": round(ours, 1),
            "vs_raw_client": round(ours / raw, 3),
            "raw_events_per_s": round(raw, 1),
            "freshness_p50_ms": round(p50, 1),
            "freshness_p99_ms": round(p99, 1),
            "events": args.events,
            "partitions": PARTITIONS,
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
