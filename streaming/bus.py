"""The event bus interface and its embedded in-process implementation.

``streaming/kafka_bus.py`` is the Kafka implementation (the one module that talks to Kafka).
The embedded bus keeps Kafka's semantics where the service relies on them: keyed records go
to a fixed partition, offsets grow per partition, a consumer group splits partitions among its
members and rebalances on join/leave, and a member resumes from the group's committed offsets.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class BusUnavailable(RuntimeError):
    """The broker did not acknowledge in time; the caller must not report success."""


class CommitFailed(RuntimeError):
    """The group rebalanced before the commit; the records will be redelivered."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes


class Producer(Protocol):
    def send_and_wait(self, messages: Sequence[Message], timeout_s: float) -> None:
        """Send and wait for every acknowledgement; raise ``BusUnavailable`` otherwise."""
        ...

    def send_nowait(self, message: Message) -> None:
        """Queue without blocking (decision logs); failures are counted, never raised."""
        ...

    def batch(self, topic: str, merge: Callable[[Sequence[bytes]], bytes]) -> None:
        """Let ``send_nowait`` messages to ``topic`` that are queued together go out as one
        record, whose value ``merge`` makes of theirs (and of values it made before: a merged
        record may be queued again to be resent). Readers of the topic must read both forms."""
        ...

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit the next offset to read per (topic, partition); ``CommitFailed`` after a rebalance."""
        ...

    def assignment(self) -> set[tuple[str, int]]: ...

    def lag(self) -> dict[int, int]:
        """Records behind the end of each assigned partition."""
        ...

    def close(self) -> None: ...


class Bus(Protocol):
    def ensure_topics(
        self, partitions: Mapping[str, int], compacted: Collection[str] = (), retention_s: float | None = None
    ) -> None:
        """Create the topics that do not exist; those in ``compacted`` with ``cleanup.policy=compact``,
        the others with ``retention.ms`` from ``retention_s`` when given (the broker's default if not)."""
        ...

    def group_lag(self, group: str, topic: str) -> dict[int, int]:
        """Per partition: end offset minus the group's committed offset, from the broker."""
        ...

    def producer(self) -> Producer: ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    def ping(self) -> bool: ...


def read_to_end(
    bus: Bus, topic: str, *, batch: int = 5000, join_timeout_s: float = 30.0, until_ms: float | None = None
) -> Iterator[Record]:
    """Every record of ``topic``, from the beginning to its end as the read started (or to
    ``until_ms``, epoch milliseconds, if given: the same cut across several topics), in offset
    order within each partition.

    Reads with a fresh consumer group that commits nothing, so it neither disturbs the feedback
    consumers nor depends on them. Records appended after the start are not returned, so a
    live topic cannot keep the read going forever. Raises ``BusUnavailable`` if no partition is
    assigned within ``join_timeout_s``.
    """
    started_ms = time.time() * 1000 if until_ms is None else until_ms
    consumer = bus.consumer(f"onlinematch-read-{uuid.uuid4().hex}", [topic])
    try:
        deadline = time.monotonic() + join_timeout_s
        past_start: set[int] = set()  # partitions that already showed a record newer than the start
        while True:
            records = consumer.poll(batch, 0.5)
            for record in records:
                if record.timestamp_ms > started_ms:
                    past_start.add(record.partition)
                elif record.partition not in past_start:
                    yield record
            assigned = {p for _, p in consumer.assignment()}
            if not assigned:
                if time.monotonic() > deadline:
                    raise BusUnavailable(f"{topic}: no partition assigned within {join_timeout_s:.0f}s")
                continue
            if assigned <= past_start or (not records and sum(consumer.lag().values()) == 0):
                return
    finally:
        consumer.close()


def partition_for(key: bytes, n_partitions: int) -> int:
    return zlib.crc32(key) % n_partitions


class MemoryBus:
    """Kafka's semantics in process; thread-safe. Nothing survives the process."""

    def __init__(self, default_partitions: int = 4) -> None:
        self._default_partitions = default_partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._committed: dict[str, dict[tuple[str, int], int]] = {}
        self._members: dict[str, list[MemoryConsumer]] = {}
        self._generation: dict[str, int] = {}
        self._cond = threading.Condition()

    def ensure_topics(
        self, partitions: Mapping[str, int], compacted: Collection[str] = (), retention_s: float | None = None
    ) -> None:
        # Nothing is ever compacted in process: every record stays, the latest per key wins.
        with self._cond:
            for topic, n in partitions.items():
                self._logs.setdefault(topic, [[] for _ in range(n)])

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(self, group: str, topics: Sequence[str]) -> MemoryConsumer:
        member = MemoryConsumer(self, group, tuple(topics))
        with self._cond:
            self._ensure_locked(topics)
            self._members.setdefault(group, []).append(member)
            self._rebalance_locked(group)
        return member

    def ping(self) -> bool:
        return True

    def group_lag(self, group: str, topic: str) -> dict[int, int]:
        with self._cond:
            self._ensure_locked([topic])
            done = self._committed.get(group, {})
            return {p: max(0, len(log) - done.get((topic, p), 0)) for p, log in enumerate(self._logs[topic])}

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [len(p) for p in self._logs.get(topic, [])]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        with self._cond:
            return dict(self._committed.get(group, {}))

    def _ensure_locked(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._logs.setdefault(topic, [[] for _ in range(self._default_partitions)])

    def _append(self, messages: Sequence[Message]) -> None:
        now = int(time.time() * 1000)
        with self._cond:
            self._ensure_locked([m.topic for m in messages])
            for m in messages:
                parts = self._logs[m.topic]
                p = partition_for(m.key, len(parts))
                parts[p].append(Record(m.topic, p, len(parts[p]), m.key, m.value, now))
            self._cond.notify_all()

    def _rebalance_locked(self, group: str) -> None:
        members = self._members.get(group, [])
        self._generation[group] = self._generation.get(group, 0) + 1
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        slots = [(t, p) for t in topics for p in range(len(self._logs[t]))]
        committed = self._committed.setdefault(group, {})
        for m in members:
            m._assigned = {}
        for i, tp in enumerate(slots):
            owner = members[i % len(members)]
            if tp[0] in owner.topics:
                owner._assigned[tp] = committed.get(tp, 0)
        for m in members:
            m._generation = self._generation[group]

    def _leave(self, member: MemoryConsumer) -> None:
        with self._cond:
            members = self._members.get(member.group, [])
            if member in members:
                members.remove(member)
                self._rebalance_locked(member.group)


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def send_and_wait(self, messages: Sequence[Message], timeout_s: float) -> None:
        self._bus._append(messages)

    def send_nowait(self, message: Message) -> None:
        self._bus._append([message])

    def batch(self, topic: str, merge: Callable[[Sequence[bytes]], bytes]) -> None:
        return None  # appended in-process at once: nothing to save by merging

    def close(self) -> None:
        return None


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, group: str, topics: tuple[str, ...]) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._assigned: dict[tuple[str, int], int] = {}  # (topic, partition) -> position
        self._generation = 0

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        with self._bus._cond:
            while True:
                out: list[Record] = []
                for (topic, p), pos in sorted(self._assigned.items()):
                    log = self._bus._logs[topic][p]
                    take = log[pos : pos + max_records - len(out)]
                    out.extend(take)
                    self._assigned[(topic, p)] = pos + len(take)
                    if len(out) >= max_records:
                        break
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._bus._cond.wait(remaining)

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        with self._bus._cond:
            if self._generation != self._bus._generation.get(self.group):
                raise CommitFailed(f"group {self.group!r} rebalanced; records will be redelivered")
            self._bus._committed.setdefault(self.group, {}).update(offsets)

    def assignment(self) -> set[tuple[str, int]]:
        with self._bus._cond:
            return set(self._assigned)

    def lag(self) -> dict[int, int]:
        with self._bus._cond:
            return {p: len(self._bus._logs[t][p]) - pos for (t, p), pos in self._assigned.items()}

    def close(self) -> None:
        self._bus._leave(self)
