"""``make soak``: the service under load and faults for ``SOAK_S`` seconds, then proof that
nothing acknowledged was lost and every accepted event was applied exactly once.

Set-up, all on free loopback ports and torn down at the end whatever happens: a redis-server
with an fsynced append-only file (``RedisServer(persistent=True)``: a restart keeps the data),
the Tansu broker, a small synthetic bundle (``app.demo.build_world_bundle``, the world of
``tests/app/conftest.py``'s SMALL), one ``onlinematch serve`` and two ``onlinematch consume``
processes on unique topic and group names, four feedback partitions.

Load: ``CLIENTS`` threads, each recommending (k = 10; retrieval mode, or a random candidate list
on one request in three) to the world's users and reporting an impression for every served item
and clicks with a position-decaying probability, each event under a unique id. A 503 (or 429)
means nothing of the batch was accepted: it is sent again after ``Retry-After`` with the same
event ids, as is a batch whose answer never came (the ids make a second copy harmless). Every
event id a 202 acknowledged (less the ``rejected`` entries) is recorded. ``SOAK_RPS`` paces the
recommendations (all threads together; 0: as fast as the service answers).

Faults, at fixed points of the load phase (``SOAK_S`` less ``RESERVE_S`` for drain and checks):
- every 60 s (a third of the load phase in a shorter run) one of the two consumers is killed
  with SIGKILL and a replacement started;
- a third consumer joins at 30% and leaves (SIGTERM) at 60%;
- Redis is restarted once at 40% (SIGTERM, the same port and directory);
- **the broker is frozen, not restarted**: this Tansu build stores topics in memory only
  (``--storage-engine memory://``; its sqlite and postgres engines are not compiled in), so a
  restart would erase every topic and with it the log the checks read. Instead it is frozen
  once (SIGSTOP, SIGCONT 20 s later) at 70%: producers and consumers time out as in a
  partition, and the log survives.

Afterwards the load stops, unanswered batches get a last chance, and the consumers drain: each
partition's end is taken as its largest offset + 1 from ``read_to_end`` (Tansu's ListOffsets
reads low by up to a batch) and compared with the group's committed offsets until they are
equal. The checks: (1) no HTTP 500; (2) every acknowledged event id is in the feedback topic;
(3) ``onlinematch rebuild --suffix=-soak --verify`` exits 0: the live statistics equal a replay
of the topics (max relative difference ≤ 1e-9), so every accepted event counted exactly once;
(4) the service recovers: feedback is acknowledged again after the freeze, and no batch is still
refused ``FINAL_RETRY_S`` after the load stopped (refused events are not lost, but a service that
never takes them again is down). The JSON also gives the time from each fault's end to the first
success (``recovered_after_s``) and the server's ``om_decision_log_dropped``: feedback on a request
whose decision record was dropped is credited live but cannot be replayed (``missing_decision``),
which fails (3).

Prints progress lines, then one JSON line; exits 1 when a check fails (the logs of every
process are kept then, and their directory printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import orjson
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from app.demo import build_world_bundle
from bandits.world import World, WorldConfig
from bench.services import Broker, RedisServer, free_port
from streaming.bus import read_to_end
from streaming.kafka_bus import KafkaBus

SMALL = WorldConfig(n_users=300, n_clusters=16, n_items=400, n_fresh=40, horizon=1000, seed=3)  # tests/app/conftest.py
VERSION = "v-soak"
TOKEN = "soak-operator-token"
K = 10
PARTITIONS = 4
CLIENTS = 4
CANDIDATES = 50
CLICK_TOP = 0.2  # click probability at the top slot, divided by (slot + 1) below it
RESERVE_S = 60.0  # of SOAK_S, for the drain and the checks
KILL_EVERY_S = 60.0
FREEZE_S = 20.0
FINAL_RETRY_S = 15.0  # after the load, for batches still answered 503
DRAIN_TIMEOUT_S = 60.0
REBUILD_TIMEOUT_S = 240.0
PROGRESS_EVERY_S = 30.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    feedback_posts: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, status)
    transport_errors: Counter[str] = field(default_factory=Counter)  # (route: exception type)
    degraded: int = 0
    acked: set[str] = field(default_factory=set)
    rejected: int = 0
    resent: int = 0  # batches sent again (after a 503, 429 or no answer)
    accepted_mismatch: int = 0  # 202s whose `accepted` differs from the events less `rejected`
    # A fault that ended, waiting for the service to work again: label → (what it waits for, since).
    waiting: dict[str, tuple[str, float]] = field(default_factory=dict)
    recovered_s: dict[str, float] = field(default_factory=dict)  # label → seconds to the first success

    def status(self, route: str, code: int) -> None:
        with self.lock:
            self.statuses[(route, code)] += 1

    def wait_for(self, label: str, what: str) -> None:
        """From now, time how long until ``what`` (``feedback``: a 202; ``recommend``: an answer
        that is not degraded) succeeds again."""
        with self.lock:
            self.waiting[label] = (what, time.monotonic())

    def succeeded(self, what: str) -> None:
        with self.lock:
            for label, (kind, since) in list(self.waiting.items()):
                if kind == what:
                    self.recovered_s[label] = round(time.monotonic() - since, 2)
                    del self.waiting[label]

    def count(self, code: int) -> int:
        with self.lock:
            return sum(n for (_, c), n in self.statuses.items() if c == code)


Batch = list[dict[str, Any]]


class Client(threading.Thread):
    """One closed-loop client: recommend, then report what was shown and clicked."""

    def __init__(
        self, n: int, base_url: str, world: World, tally: Tally, stop: threading.Event, interval_s: float
    ) -> None:
        super().__init__(name=f"soak-client-{n}", daemon=True)
        self.rng = np.random.default_rng(1000 + n)
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        self.world, self.tally, self.stop, self.interval_s = world, tally, stop, interval_s
        self.pending: list[tuple[float, Batch]] = []  # (due, events): not accepted yet

    def run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                self.retry_due()
                if self.interval_s > 0:
                    next_at += self.interval_s
                    if (wait := next_at - time.monotonic()) > 0:
                        self.stop.wait(wait)
                    else:
                        next_at = time.monotonic()  # behind: no burst to catch up
                if not self.stop.is_set():
                    self.one()
        except Exception as exc:  # reported, not hidden: the run fails on a dead client
            say(f"client {self.name} crashed: {type(exc).__name__}: {exc}")
            raise

    def one(self) -> None:
        c = self.world.config
        body: dict[str, Any] = {"user_id": f"user-{int(self.rng.integers(c.n_users))}", "k": K}
        if self.rng.random() < 1 / 3:
            body["candidates"] = [f"item-{j}" for j in self.rng.choice(c.n_items, CANDIDATES, replace=False)]
        try:
            r = self.http.post("/v1/recommend", json=body)
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.transport_errors[f"recommend: {type(exc).__name__}"] += 1
            return
        with self.tally.lock:
            self.tally.requests += 1
        self.tally.status("recommend", r.status_code)
        if r.status_code != 200:
            return
        data = r.json()
        if data["degraded"]:
            with self.tally.lock:
                self.tally.degraded += 1
        else:
            self.tally.succeeded("recommend")
        rid = data["request_id"]
        served = [i["item_id"] for i in data["items"]]
        events: Batch = [
            {"event_id": f"{rid}-i{p}", "request_id": rid, "item_id": i, "type": "impression", "position": p}
            for p, i in enumerate(served)
        ]
        clicks = np.flatnonzero(self.rng.random(len(served)) < CLICK_TOP / (np.arange(len(served)) + 1.0))
        events += [
            {"event_id": f"{rid}-c{p}", "request_id": rid, "item_id": served[p], "type": "click", "position": p}
            for p in clicks.tolist()
        ]
        if events:
            self.send(events)

    def send(self, events: Batch) -> bool:
        """POST the batch; True once it is answered for good (acknowledged or refused as invalid),
        False when it was queued to be sent again."""
        try:
            r = self.http.post("/v1/feedback", json={"events": events})
        except httpx.HTTPError as exc:
            # No answer: maybe accepted, maybe not. Sent again under the same ids.
            with self.tally.lock:
                self.tally.transport_errors[f"feedback: {type(exc).__name__}"] += 1
            self.pending.append((time.monotonic() + 1.0, events))
            return False
        with self.tally.lock:
            self.tally.feedback_posts += 1
        self.tally.status("feedback", r.status_code)
        if r.status_code == 202:
            data = r.json()
            rejected = {str(x["event_id"]) for x in data["rejected"]}
            ids = {e["event_id"] for e in events} - rejected
            with self.tally.lock:
                self.tally.acked |= ids
                self.tally.rejected += len(rejected)
                if int(data["accepted"]) != len(ids):
                    self.tally.accepted_mismatch += 1
            self.tally.succeeded("feedback")
            return True
        if r.status_code in (429, 500, 503):
            # Nothing accepted (a 500 says nothing either way: the same ids make a resend safe).
            try:
                after = float(r.headers.get("retry-after", "1"))
            except ValueError:
                after = 1.0
            self.pending.append((time.monotonic() + after, events))
            return False
        return True  # any other answer is a bug of this client or the service; counted in statuses

    def retry_due(self) -> None:
        now = time.monotonic()
        due = [b for t, b in self.pending if t <= now]
        if not due:
            return
        self.pending = [(t, b) for t, b in self.pending if t > now]
        for events in due:
            with self.tally.lock:
                self.tally.resent += 1
            self.send(events)

    def close(self) -> None:
        self.http.close()


class Fleet:
    """The ``onlinematch`` processes: one server, the consumers; each one's output in a log file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.exe = str(Path(sys.executable).parent / "onlinematch")
        self.env, self.logs = env, logs
        self.files: list[TextIO] = []
        self.serve: subprocess.Popen[bytes] | None = None
        self.slots: dict[str, subprocess.Popen[bytes]] = {}  # slot → its current consumer
        self.names: dict[str, str] = {}  # slot → the current consumer's name (c1, c2, ...)
        self.started = 0
        self.unexpected: list[str] = []  # consumers that exited without being told to

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{log_name}.log").open("a")
        self.files.append(out)
        return subprocess.Popen([self.exe, *args], env=env or self.env, stdout=out, stderr=subprocess.STDOUT)

    def start_serve(self, port: int) -> None:
        self.serve = self._spawn(["serve", "--port", str(port)], "serve")

    def start_consumer(self, slot: str) -> str:
        self.started += 1
        name = f"c{self.started}"
        # Each its own metrics port (METRICS_PORT, default 9100): they share one host here.
        env = {**self.env, "METRICS_PORT": str(free_port())}
        self.slots[slot] = self._spawn(["consume"], f"consumer-{name}", env)
        self.names[slot] = name
        return name

    def kill_consumer(self, slot: str) -> str:
        proc, name = self.slots.pop(slot), self.names.pop(slot)
        proc.kill()
        proc.wait(timeout=10)
        return name

    def stop_consumer(self, slot: str) -> str:
        proc, name = self.slots.pop(slot), self.names.pop(slot)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.unexpected.append(f"{name} did not stop within 30 s of SIGTERM: killed")
            proc.kill()
            proc.wait(timeout=10)
        return name

    def check(self) -> str | None:
        """Restart a consumer that died on its own (and note it); a message if the server died."""
        for slot, proc in list(self.slots.items()):
            if proc.poll() is not None:
                name = self.names[slot]
                replacement = self.start_consumer(slot)
                self.unexpected.append(f"{name} exited with {proc.returncode}; {replacement} started")
                say(f"  ! consumer {name} exited by itself (code {proc.returncode}): started {replacement}")
        if self.serve is not None and self.serve.poll() is not None:
            return f"onlinematch serve exited with {self.serve.returncode}"
        return None

    def running(self) -> str:
        return ",".join(self.names[s] for s in sorted(self.slots))

    def stop_all(self) -> None:
        procs = [p for p in [self.serve, *self.slots.values()] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.slots, self.names, self.serve = {}, {}, None
        for f in self.files:
            f.close()


def wait_ready(base_url: str, serve: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 200:
                    return
            if serve.poll() is not None:
                raise RuntimeError(f"onlinematch serve exited with {serve.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url} did not become ready in {timeout_s:.0f} s")
            time.sleep(0.3)


def decisions_dropped(base_url: str) -> float | None:
    """The server's ``om_decision_log_dropped``: decision records it could not log (feedback on
    their requests is credited live but cannot be replayed, ``missing_decision`` in a rebuild)."""
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("om_decision_log_dropped ")]
    return values[0] if values else None


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition, fetched without joining the group."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: int(reader.committed(TopicPartition(topic, p)) or 0) for p in range(PARTITIONS)}
    finally:
        reader.close()


@dataclass
class TopicRead:
    ends: dict[int, int]  # partition → largest offset + 1
    event_ids: set[str]
    records: int
    undecodable: int


def read_feedback(bus: KafkaBus, topic: str) -> TopicRead:
    ends = dict.fromkeys(range(PARTITIONS), 0)
    ids: set[str] = set()
    records = undecodable = 0
    for record in read_to_end(bus, topic):
        records += 1
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
        try:
            ids.add(str(orjson.loads(record.value)["event_id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            undecodable += 1
    return TopicRead(ends, ids, records, undecodable)


def drain(bus: KafkaBus, bootstrap: str, group: str, topic: str) -> tuple[bool, float, TopicRead]:
    """Until the group's committed offsets reach each partition's end; (drained, seconds, the read)."""
    started = time.monotonic()
    read = read_feedback(bus, topic)
    say(f"  feedback topic: {read.records} records, ends {[read.ends[p] for p in range(PARTITIONS)]}")
    last: dict[int, int] = {}
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        try:
            last = committed_offsets(bootstrap, group, topic)
        except Exception as exc:  # kafka-python raises many kinds; retried until the deadline
            say(f"  committed offsets not read: {type(exc).__name__}: {exc}")
            time.sleep(1.0)
            continue
        if all(last[p] == read.ends[p] for p in range(PARTITIONS)):
            return True, time.monotonic() - started, read
        if any(last[p] > read.ends[p] for p in range(PARTITIONS)):
            # The read stopped short of the end: read again.
            say(f"  committed {[last[p] for p in range(PARTITIONS)]} past the read's ends: reading again")
            again = read_feedback(bus, topic)
            read = TopicRead(
                {p: max(read.ends[p], again.ends[p]) for p in range(PARTITIONS)},
                read.event_ids | again.event_ids,
                max(read.records, again.records),
                max(read.undecodable, again.undecodable),
            )
        time.sleep(0.5)
    say(f"  not drained in {DRAIN_TIMEOUT_S:.0f} s: committed {last}, ends {read.ends}")
    return False, time.monotonic() - started, read


def rebuild(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    exe = str(Path(sys.executable).parent / "onlinematch")
    try:
        done = subprocess.run(
            [exe, "rebuild", "--suffix=-soak", "--verify"],
            env=env,
            capture_output=True,
            text=True,
            timeout=REBUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return -1, {}, f"did not finish within {REBUILD_TIMEOUT_S:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"into"')]
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return done.returncode, report, (done.stderr + done.stdout)[-2000:]


@dataclass
class Schedule:
    """Faults at offsets (s) from the start of the load."""

    events: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)

    def at(self, t: float, label: str, fn: Callable[[], None]) -> None:
        self.events.append((t, label, fn))
        self.events.sort(key=lambda e: e[0])

    def due(self, elapsed: float) -> list[tuple[float, str, Callable[[], None]]]:
        out = [e for e in self.events if e[0] <= elapsed]
        self.events = [e for e in self.events if e[0] > elapsed]
        return out


def main() -> int:
    t0 = time.monotonic()
    soak_s = float(os.environ.get("SOAK_S", "600"))
    rps = float(os.environ.get("SOAK_RPS", "40"))
    if soak_s < RESERVE_S + 30:
        raise SystemExit(f"SOAK_S must be at least {RESERVE_S + 30:.0f} (the load phase is SOAK_S - {RESERVE_S:.0f})")
    # A SIGTERM (or make's interrupt) still stops every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    np.seterr(over="ignore")
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="om-soak-"))
    logs = work / "logs"
    logs.mkdir()
    out: dict[str, Any] = {}
    failures: list[str] = []
    redis = RedisServer(persistent=True).start()
    broker: Broker | None = None
    fleet: Fleet | None = None
    clients: list[Client] = []
    tally = Tally()
    counts = Counter[str]()
    try:
        broker = Broker().start()
        world = World(SMALL)
        build_world_bundle(work / "bundles", world, VERSION)
        port = free_port()
        group = f"soak-group-{tag}"
        env = {
            **os.environ,
            "REDIS_URL": redis.url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "BUNDLE_DIR": str(work / "bundles"),
            "FEEDBACK_TOPIC": f"soak-feedback-{tag}",
            "DECISIONS_TOPIC": f"soak-decisions-{tag}",
            "DEAD_LETTER_TOPIC": f"soak-dlq-{tag}",
            "ITEMS_TOPIC": f"soak-items-{tag}",
            "CONSUMER_GROUP": group,
            "FEEDBACK_PARTITIONS": str(PARTITIONS),
            "PORT": str(port),
            "OPERATOR_TOKEN": TOKEN,
            "LOG_LEVEL": "warning",
        }
        fleet = procs = Fleet(env, logs)  # `procs` for the closures below: never None
        procs.start_serve(port)
        assert procs.serve is not None
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, procs.serve)
        procs.start_consumer("a")
        procs.start_consumer("b")

        load_start = time.monotonic()
        load_s = t0 + soak_s - RESERVE_S - load_start
        kill_every = min(KILL_EVERY_S, load_s / 3)
        freeze_s = min(FREEZE_S, 0.2 * load_s)
        say(f"soak: {load_s:.0f} s of load ({CLIENTS} clients, {rps:g} requests/s), set-up took "
            f"{load_start - t0:.0f} s; redis {redis.url} (appendfsync always), broker {broker.bootstrap}, "
            f"serve {base_url}, consumers {fleet.running()}; logs in {logs}")  # fmt: skip
        say(f"soak: the broker is frozen for {freeze_s:.0f} s (SIGSTOP/SIGCONT) instead of restarted: this Tansu "
            "build keeps topics in memory only (no sqlite/postgres engine), a restart would erase them")  # fmt: skip

        def kill(n: int) -> Callable[[], None]:
            def fn() -> None:
                slot = "ab"[n % 2]
                victim = procs.kill_consumer(slot)
                counts["consumer_kills"] += 1
                say(f"  fault: SIGKILL consumer {victim}, started {procs.start_consumer(slot)}")

            return fn

        def third_joins() -> None:
            say(f"  fault: consumer {procs.start_consumer('c')} joins")

        def third_leaves() -> None:
            say(f"  fault: consumer {procs.stop_consumer('c')} leaves (SIGTERM)")

        def redis_restart() -> None:
            started = time.monotonic()
            redis.restart()
            counts["redis_restarts"] += 1
            tally.wait_for("redis_restart", "recommend")
            say(f"  fault: redis restarted (SIGTERM, same port and dir) in {time.monotonic() - started:.1f} s")

        def freeze() -> None:
            assert broker is not None
            broker.pause()
            counts["broker_freezes"] += 1
            say(f"  fault: broker frozen (SIGSTOP) for {freeze_s:.0f} s")

        def thaw() -> None:
            assert broker is not None
            broker.resume()
            tally.wait_for("broker_freeze", "feedback")
            say("  fault: broker resumed (SIGCONT)")

        schedule = Schedule()
        n = 1
        while n * kill_every < load_s - 1:
            schedule.at(n * kill_every, "kill", kill(n - 1))
            n += 1
        schedule.at(0.3 * load_s, "join", third_joins)
        schedule.at(0.4 * load_s, "redis", redis_restart)
        schedule.at(0.6 * load_s, "leave", third_leaves)
        schedule.at(0.7 * load_s, "freeze", freeze)
        schedule.at(0.7 * load_s + freeze_s, "thaw", thaw)

        stop = threading.Event()
        interval = CLIENTS / rps if rps > 0 else 0.0
        clients = [Client(i, base_url, world, tally, stop, interval) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        next_progress = PROGRESS_EVERY_S
        while (elapsed := time.monotonic() - load_start) < load_s:
            for _, _, fn in schedule.due(elapsed):
                fn()
            if (dead := fleet.check()) is not None:
                failures.append(dead)
                say(f"  ! {dead}: load stopped")
                break
            if elapsed >= next_progress:
                next_progress += PROGRESS_EVERY_S
                with tally.lock:
                    requests, acked, posts = tally.requests, len(tally.acked), tally.feedback_posts
                    errors = sum(tally.transport_errors.values())
                pending = sum(len(c.pending) for c in clients)
                say(f"[{elapsed:4.0f} s] requests {requests} ({requests / elapsed:.0f}/s), feedback posts {posts}, "
                    f"events acknowledged {acked}, 503 {tally.count(503)}, 500 {tally.count(500)}, "
                    f"no answer {errors}, degraded {tally.degraded}, batches waiting {pending}, "
                    f"consumers {fleet.running()}")  # fmt: skip
            time.sleep(0.1)
        for _, label, fn in schedule.due(float("inf")):
            if label == "thaw":  # never leave the broker frozen
                fn()
        stop.set()
        for c in clients:
            c.join(timeout=30)
            if c.is_alive():
                failures.append(f"{c.name} did not stop")
        load_elapsed = time.monotonic() - load_start
        say(f"load stopped after {load_elapsed:.0f} s: {tally.requests} requests")

        # Batches still unanswered or answered 503: a last chance, under the same ids.
        deadline = time.monotonic() + FINAL_RETRY_S
        while time.monotonic() < deadline and (waiting := [(c, b) for c in clients for _, b in c.pending]):
            say(f"  {len(waiting)} feedback batches not acknowledged yet: sent again")
            for c in clients:
                c.pending = []
            for c, events in waiting:  # a refused batch goes back into c.pending
                if time.monotonic() >= deadline:
                    c.pending.append((0.0, events))
                    continue
                with tally.lock:
                    tally.resent += 1
                c.send(events)
            time.sleep(0.5)
        unacknowledged = sum(len(b) for c in clients for _, b in c.pending)
        if unacknowledged:
            # Not lost (never acknowledged), but the service did not take them back once the faults were over.
            failures.append(f"{unacknowledged} events still refused {FINAL_RETRY_S:.0f} s after the load stopped")
            say(f"  ! {unacknowledged} events never acknowledged")
        for label, (what, since) in tally.waiting.items():
            failures.append(f"{what} never succeeded again after {label} ({time.monotonic() - since:.0f} s)")
        say(f"  first success after each fault (s): {tally.recovered_s}; still waiting: {sorted(tally.waiting)}")
        dropped = decisions_dropped(base_url)

        say("draining: committed offsets against each partition's largest offset + 1")
        bus = KafkaBus(broker.bootstrap)
        drained, drain_s, read = drain(bus, broker.bootstrap, group, env["FEEDBACK_TOPIC"])
        say(f"  drained: {drained} in {drain_s:.1f} s")
        if not drained:
            failures.append(f"the consumers did not reach the end of the feedback topic in {DRAIN_TIMEOUT_S:.0f} s")
        missing = tally.acked - read.event_ids
        if missing:
            failures.append(f"{len(missing)} acknowledged events not in the feedback topic, e.g. {sorted(missing)[:5]}")
        http_500 = tally.count(500)
        if http_500:
            failures.append(f"{http_500} HTTP 500 answers")

        say("rebuild --suffix=-soak --verify: the live statistics against a replay of the topics")
        rebuild_started = time.monotonic()
        code, report, tail = rebuild(env)
        worst = report.get("max_relative_difference")
        say(f"  exit {code} in {time.monotonic() - rebuild_started:.0f} s: "
            f"max relative difference {worst}, counts {report.get('counts')}")  # fmt: skip
        if code != 0 and report:
            failures.append(
                f"rebuild --verify exited {code}: max relative difference {worst}, counts {report.get('counts')}, "
                f"{len(report.get('differing_items', []))} items listed as differing"
            )
        elif code != 0:
            failures.append(f"rebuild --verify exited {code}: {tail[-800:]}")
        other = {f"{route} {status}": n for (route, status), n in tally.statuses.items() if status not in (200, 202)}
        out = {
            "duration_s": round(time.monotonic() - t0, 1),
            "load_s": round(load_elapsed, 1),
            "requests": tally.requests,
            "feedback_posts": tally.feedback_posts,
            "feedback_events_acknowledged": len(tally.acked),
            "feedback_events_rejected": tally.rejected,
            "feedback_events_unacknowledged": unacknowledged,
            "feedback_batches_resent": tally.resent,
            "accepted_count_mismatches": tally.accepted_mismatch,
            "http_500": http_500,
            "http_503": tally.count(503),
            "http_429": tally.count(429),
            "http_not_ok": other,
            "no_answer": dict(tally.transport_errors),
            "degraded_recommendations": tally.degraded,
            "recovered_after_s": tally.recovered_s,
            "decision_logs_dropped": dropped,
            "consumer_kills": counts["consumer_kills"],
            "consumer_exits_unexpected": fleet.unexpected,
            "redis_restarts": counts["redis_restarts"],
            "broker_freezes": counts["broker_freezes"],
            "broker_restart": "replaced by a freeze: this Tansu build has in-memory storage only",
            "drained": drained,
            "drain_s": round(drain_s, 1),
            "records_in_topic": read.records,
            "events_in_topic_missing": len(missing),
            "rebuild_exit": code,
            "rebuild_max_relative_difference": worst,
            "rebuild_counts": report.get("counts"),
            "rebuild_differing_items": report.get("differing_items", [])[:5],
        }
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for c in clients:
            c.stop.set()
        if fleet is not None:
            fleet.stop_all()
        if broker is not None:
            broker.stop()
        redis.cleanup()
        for c in clients:
            c.close()
        passed = not failures
        out["failures"] = failures
        out["passed"] = passed
        out.setdefault("duration_s", round(time.monotonic() - t0, 1))
        if passed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"soak FAILED: {'; '.join(failures)}")
            say(f"process logs kept in {logs}")
        print(json.dumps(out), flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
