"""The one module that talks to Kafka (kafka-python; any Kafka-protocol broker).

Producers wait for ``acks=all`` on feedback: ``POST /v1/feedback`` reports an event accepted
only after the broker acknowledged it. Decision logs are sent without blocking the response.
Consumers never auto-commit: the runner commits after the statistics are in the store.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from streaming.bus import BusUnavailable, CommitFailed, Message, Record

log = structlog.get_logger(__name__)

FAIL_FAST_S = 5.0
RESEND_PAUSE_S = 0.5  # between resends of a decision record while the broker cannot be reached
# A drain pass waits this long for more queued messages to merge into one record (``batch``),
# and merges at most MERGE_MAX of them: each kafka-python send costs about as much as a
# hundred merged values (bench-serve profile), and 256 decisions stay far below max.request.size.
MERGE_LINGER_S = 0.02
MERGE_MAX = 256


class KafkaBus:
    def __init__(self, bootstrap_servers: str, timeout_s: float = 2.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s

    def _reachable(self) -> bool:
        """A plain TCP connect to any bootstrap server, bounded by the timeout. kafka-python's
        admin client otherwise keeps bootstrapping for 30 s whatever its timeout says."""
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host or "localhost", int(port or 9092)), timeout=self.timeout_s):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def ensure_topics(
        self, partitions: Mapping[str, int], compacted: Collection[str] = (), retention_s: float | None = None
    ) -> None:
        if not self._reachable():
            raise BusUnavailable(f"kafka: no bootstrap server reachable in {self.bootstrap_servers}")
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=int(self.timeout_s * 5000)
        )
        try:
            existing = set(admin.list_topics())
            new = [
                NewTopic(
                    t,
                    num_partitions=n,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"}
                    if t in compacted
                    else ({"retention.ms": str(int(retention_s * 1000))} if retention_s is not None else {}),
                )
                for t, n in partitions.items()
                if t not in existing
            ]
            if new:
                # Another process may create it between list and create.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new)
        finally:
            admin.close()

    def group_lag(self, group: str, topic: str) -> dict[int, int]:
        """Per partition of ``topic``: its end offset minus ``group``'s committed offset (the
        whole partition when the group has committed nothing), read from the broker. Unlike a
        consumer's own report it is true while the group is dead or re-joining: it grows."""
        if not self._reachable():
            raise BusUnavailable(f"kafka: no bootstrap server reachable in {self.bootstrap_servers}")
        # A consumer with the group's id that never subscribes: it fetches the committed
        # offsets (OffsetFetch) without joining, so the group is not disturbed.
        reader = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            request_timeout_ms=int(self.timeout_s * 5000),
        )
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            ends = reader.end_offsets(partitions)
            lag = {tp.partition: max(0, int(ends[tp]) - int(reader.committed(tp) or 0)) for tp in partitions}
        except KafkaError as exc:
            raise BusUnavailable(f"kafka: group offsets of {group}: {type(exc).__name__}") from exc
        finally:
            reader.close()
        return lag

    def producer(self) -> KafkaBusProducer:
        return KafkaBusProducer(self.bootstrap_servers, self.timeout_s)

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaBusConsumer:
        return KafkaBusConsumer(self.bootstrap_servers, group, topics)

    def ping(self) -> bool:
        # A TCP connect, not an admin client: readiness probes call this every few seconds.
        return self._reachable()


class KafkaBusProducer:
    """Feedback waits for ``acks=all``; decision logs go through a bounded queue drained by a
    background thread, so no Kafka call (kafka-python may block on metadata) is on a request path.

    A decision record that the broker does not take is queued again and resent until it lands:
    ``onlinematch rebuild`` replays the decisions, and feedback on a request whose decision is
    missing is credited live but cannot be replayed. Only a full queue drops one (counted in
    ``dropped``). A resent record may land twice; readers key decisions by request id.

    Messages to a topic given to ``batch`` that are queued within ``MERGE_LINGER_S`` of each
    other go out as one record (at most ``MERGE_MAX``), keyed by the first one's key."""

    QUEUE_SIZE = 10_000

    def __init__(self, bootstrap_servers: str, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._servers = bootstrap_servers
        self._producer: KafkaProducer | None = None
        self._failed_at = float("-inf")
        self._queue: queue.Queue[Message | None] = queue.Queue(self.QUEUE_SIZE)
        self._drainer: threading.Thread | None = None
        self._merge: dict[str, Callable[[Sequence[bytes]], bytes]] = {}
        self.dropped = 0
        self.resent = 0

    def _get(self) -> KafkaProducer:
        # Created lazily so the service starts (and degrades) while the broker is down; after a
        # failed connect, fail fast for a few seconds instead of blocking every caller again.
        with self._lock:
            if self._producer is None:
                if time.monotonic() - self._failed_at < FAIL_FAST_S:
                    raise BusUnavailable(f"kafka: {self._servers} unreachable (retrying in a few seconds)")
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self._servers,
                        acks="all",
                        # Not idempotent: kafka-python 3.0's idempotent producer, after a batch
                        # expires while the broker stalls, resets its producer id without asking
                        # for a new one and never sends again (found by `make soak`). Duplicates
                        # it would have prevented are harmless here: feedback is deduplicated by
                        # event and credit, decisions by request id.
                        enable_idempotence=False,
                        linger_ms=25,  # decision logs batch up; feedback flushes explicitly
                        retries=3,
                        max_block_ms=int(self._timeout_s * 1000),
                        request_timeout_ms=int(self._timeout_s * 1000),
                        delivery_timeout_ms=int(self._timeout_s * 1000) + 100,
                        bootstrap_timeout_ms=int(self._timeout_s * 1000),
                        reconnect_backoff_max_ms=1000,
                    )
                except KafkaError as exc:
                    self._failed_at = time.monotonic()
                    raise BusUnavailable(f"kafka: cannot connect to {self._servers}: {exc}") from exc
            return self._producer

    def send_and_wait(self, messages: Sequence[Message], timeout_s: float) -> None:
        producer = self._get()
        try:
            futures = [producer.send(m.topic, key=m.key, value=m.value) for m in messages]
            producer.flush(timeout=timeout_s)
            for f in futures:
                f.get(timeout=timeout_s)
        except KafkaError as exc:
            raise BusUnavailable(f"kafka: not acknowledged: {type(exc).__name__}") from exc

    def send_nowait(self, message: Message) -> None:
        if self._drainer is None:
            with self._lock:
                if self._drainer is None:
                    self._drainer = threading.Thread(target=self._drain, name="kafka-decision-log", daemon=True)
                    self._drainer.start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._dropped("queue full")

    def batch(self, topic: str, merge: Callable[[Sequence[bytes]], bytes]) -> None:
        self._merge[topic] = merge

    def _drain(self) -> None:
        stopping = False
        while not stopping and (first := self._queue.get()) is not None:
            taken = [first]
            if self._merge:
                deadline = time.monotonic() + MERGE_LINGER_S
                while len(taken) < MERGE_MAX and (left := deadline - time.monotonic()) > 0:
                    try:
                        message = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    if message is None:
                        stopping = True  # close(): send what was taken, then stop
                        break
                    taken.append(message)
            for message in self._merged(taken):
                try:
                    future = self._get().send(message.topic, key=message.key, value=message.value)
                    future.add_errback(lambda exc, m=message: self._again(m, exc))
                except (KafkaError, BusUnavailable) as exc:
                    self._again(message, exc)
                    time.sleep(RESEND_PAUSE_S)  # the broker is down: do not spin on the queue

    def _merged(self, messages: list[Message]) -> list[Message]:
        """``messages`` with those to each batched topic merged into one, in queue order."""
        if len(messages) == 1 or not self._merge:
            return messages
        out: list[Message] = []
        groups: dict[str, list[Message]] = {}
        for m in messages:
            if m.topic in self._merge:
                groups.setdefault(m.topic, []).append(m)
            else:
                out.append(m)
        for topic, group in groups.items():
            one = (
                group[0]
                if len(group) == 1
                else Message(topic, group[0].key, self._merge[topic]([m.value for m in group]))
            )
            out.append(one)
        return out

    def _again(self, message: Message, exc: Any) -> None:
        """Queue a record the broker did not take for another send; drop it only if full."""
        self.resent += 1
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._dropped(exc)

    def _dropped(self, exc: Any) -> None:
        self.dropped += 1
        log.warning("decision_log_dropped", error=exc if isinstance(exc, str) else type(exc).__name__)

    def close(self) -> None:
        if self._drainer is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._drainer.join(timeout=self._timeout_s)
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self._timeout_s)
                self._producer = None


class KafkaBusConsumer:
    def __init__(self, bootstrap_servers: str, group: str, topics: Sequence[str]) -> None:
        # A 6 s session with 1 s heartbeats joins a group in ~3 s (client defaults: ~23 s).
        self._c = KafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_records=5000,
            fetch_max_wait_ms=50,
            reconnect_backoff_max_ms=1000,
        )

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        batches = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
            for msgs in batches.values()
            for m in msgs
        ]

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        try:
            self._c.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        except CommitFailedError as exc:
            raise CommitFailed(str(exc)) from exc

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def lag(self) -> dict[int, int]:
        partitions = list(self._c.assignment())
        if not partitions:
            return {}
        ends = self._c.end_offsets(partitions)
        return {tp.partition: max(0, int(ends[tp]) - int(self._c.position(tp))) for tp in partitions}

    def close(self) -> None:
        self._c.close()
