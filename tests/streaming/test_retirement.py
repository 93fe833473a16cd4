"""Statistics retirement under every interleaving: a Hypothesis state machine over one store.

Several replicas swap versions, report (heartbeat) and serve; feedback is applied and
redelivered; the clock moves; several consumers plan, mark and finish retirement passes, in
any order and in pieces. The replicas run the real ``app.lease.ServingLease``; the consumers
run the real ``streaming.stores.retirable`` / ``retire_versions`` against the store under test.
Feedback is applied only while its request's context lives (the attribution window), which is
what the consumer's join to stored contexts guarantees.

Properties, after every step:
- **Nothing is lost.** Every version's statistics equal the sum of what was applied to it
  since it was last deleted, and a deletion never hits a version served within the grace
  period, nor one that a replica holds a serving lease on.
- **Nothing is applied twice.** A redelivered event whose context lives is a duplicate.
- **Retirement happens.** After a full pass, while some replica is live, every version that
  nobody has reported for the grace period plus the lease (or, never reported, that has existed
  that long) is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from app.lease import Report, ServingLease
from streaming.redis_store import RedisStore
from streaming.stores import Applied, ItemDelta, MemoryStore, Store, retirable, retire_versions

WINDOW_S = 60.0  # attribution window: how long a request's context lives
GRACE_S = 100.0  # the window plus slack, as the consumer passes it
LEASE_S = 20.0
HORIZON_S = GRACE_S + LEASE_S
VERSIONS = ("v1", "v2", "v3")
ITEMS = ("a", "b", "c")
N_REPLICAS = 3
N_CONSUMERS = 2
PARTITIONS = 2
CREDIT_TTL_S = 3600.0

StoreFactory = Callable[[Callable[[], float]], Store]


@dataclass
class Replica:
    lease: ServingLease
    version: str | None = None


@dataclass(frozen=True)
class Served:
    version: str
    item: str
    at: float
    b: float


@dataclass(frozen=True)
class Event:
    served: Served
    partition: int
    offset: int

    def delta(self) -> ItemDelta:
        one = np.array([1.0])
        return ItemDelta(self.served.item, self.offset, self.offset, np.array([0]), one, one * self.served.b)


class Retirement(RuleBasedStateMachine):
    def __init__(self, make_store: StoreFactory) -> None:
        super().__init__()
        self.now = 1_000_000.0
        self.store = make_store(self.clock)
        self.replicas = [
            Replica(ServingLease(self.store, LEASE_S, wall=self.clock, clock=self.clock)) for _ in range(N_REPLICAS)
        ]
        self.marked: list[set[str]] = [set() for _ in range(N_CONSUMERS)]
        self.served: list[Served] = []
        self.applied: list[Event] = []
        self.offsets = [0] * PARTITIONS
        self.expected: dict[tuple[str, str], list[float]] = {}
        self.last_served: dict[str, float] = {}
        self.reported: dict[str, float] = {}
        self.born: dict[str, float] = {}

    def clock(self) -> float:
        return self.now

    # -- the replicas ------------------------------------------------------------------------

    def _report(self, replica: Replica, version: str) -> Report:
        report = replica.lease.acquire(version)
        if report is Report.GRANTED:
            self.reported[version] = max(self.now, self.reported.get(version, self.now))
        else:
            assert report is Report.REFUSED and version in self.store.retiring_versions()
        return report

    @rule(r=st.integers(0, N_REPLICAS - 1), version=st.sampled_from(VERSIONS))
    def swap(self, r: int, version: str) -> None:
        # BundleHolder's rule: the new version is served only once its report has landed.
        replica = self.replicas[r]
        if self._report(replica, version) is Report.GRANTED:
            replica.version = version

    @rule(r=st.integers(0, N_REPLICAS - 1))
    def heartbeat(self, r: int) -> None:
        replica = self.replicas[r]
        if replica.version is not None:
            self._report(replica, replica.version)

    @rule(r=st.integers(0, N_REPLICAS - 1), item=st.sampled_from(ITEMS), b=st.sampled_from([0.25, -0.5, 1.0]))
    def serve(self, r: int, item: str, b: float) -> None:
        # The recommender stores a context (what feedback joins to) only under a held lease.
        replica = self.replicas[r]
        if replica.version is not None and replica.lease.held(replica.version):
            self.served.append(Served(replica.version, item, self.now, b))
            self.last_served[replica.version] = self.now

    # -- feedback ----------------------------------------------------------------------------

    def _alive(self, served: Served) -> bool:
        return self.now - served.at <= WINDOW_S

    @precondition(lambda self: self.served)
    @rule(pick=st.integers(0, 10**6))
    def feedback(self, pick: int) -> None:
        served = self.served[pick % len(self.served)]
        if not self._alive(served):
            return  # its context expired: the consumer dead-letters it
        partition = ITEMS.index(served.item) % PARTITIONS
        self.offsets[partition] += 1
        event = Event(served, partition, self.offsets[partition])
        assert self.store.apply(served.version, partition, [event.delta()], CREDIT_TTL_S) == [Applied.APPLIED]
        cell = self.expected.setdefault((served.version, served.item), [0.0, 0.0])
        cell[0] += 1.0
        cell[1] += served.b
        self.born.setdefault(served.version, self.now)
        self.applied.append(event)

    @precondition(lambda self: self.applied)
    @rule(pick=st.integers(0, 10**6))
    def redeliver(self, pick: int) -> None:
        event = self.applied[pick % len(self.applied)]
        if self._alive(event.served):
            result = self.store.apply(event.served.version, event.partition, [event.delta()], CREDIT_TTL_S)
            assert result == [Applied.DUPLICATE], f"a redelivered event was applied again: {event}"

    # -- the consumers' retirement passes ----------------------------------------------------

    @rule(dt=st.sampled_from([0.5, 5.0, 19.0, 41.0, 61.0, 101.0, 121.0, 400.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(c=st.integers(0, N_CONSUMERS - 1))
    def plan_and_mark(self, c: int) -> None:
        s = self.store
        plan = retirable(s.stats_versions(), s.serving_versions(), s.retiring_versions(), self.now, GRACE_S, LEASE_S)
        self.marked[c] |= {v for v in plan if s.begin_retire(v, self.now, GRACE_S, LEASE_S)}

    @rule(c=st.integers(0, N_CONSUMERS - 1))
    def finish_marked(self, c: int) -> None:
        # Possibly long after the mark, and after another consumer finished the same version.
        for version in sorted(self.marked[c]):
            still_marked = version in self.store.retiring_versions()
            dropped = self.store.drop_version(version)
            if still_marked:
                self._deleted(version)
            else:
                assert dropped == 0
        self.marked[c].clear()

    @rule()
    def full_pass(self) -> None:
        for version in retire_versions(self.store, self.now, GRACE_S, LEASE_S):
            self._deleted(version)
        if not any(self.now - t <= HORIZON_S for t in self.reported.values()):
            return  # no replica is live: nothing need be retired
        stats, serving = self.store.stats_versions(), self.store.serving_versions()
        for version in VERSIONS:
            evidence = self.reported.get(version, self.born.get(version))
            if evidence is not None and self.now - evidence > HORIZON_S:
                assert version not in stats and version not in serving, f"{version} is stale but kept"

    def _deleted(self, version: str) -> None:
        age = self.now - self.last_served.get(version, -np.inf)
        assert age > GRACE_S, f"{version}, served {age} s ago, was deleted"
        held = [i for i, r in enumerate(self.replicas) if r.version == version and r.lease.held(version)]
        assert not held, f"{version} was deleted while replicas {held} hold its lease"
        self.expected = {k: v for k, v in self.expected.items() if k[0] != version}
        self.reported.pop(version, None)
        self.born.pop(version, None)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def statistics_are_exactly_what_was_applied(self) -> None:
        for version in VERSIONS:
            w2, b = self.store.gather(version, list(ITEMS), np.array([0]))
            want = np.array([self.expected.get((version, item), [0.0, 0.0]) for item in ITEMS])
            assert np.array_equal(w2[:, 0], want[:, 0]) and np.array_equal(b[:, 0], want[:, 1]), (
                f"{version}: store has w2={w2[:, 0]}, b={b[:, 0]}; applied w2={want[:, 0]}, b={want[:, 1]}"
            )

    @invariant()
    def no_served_version_is_being_retired(self) -> None:
        retiring = self.store.retiring_versions()
        for replica in self.replicas:
            if replica.version is not None and replica.lease.held(replica.version):
                assert replica.version not in retiring, f"{replica.version} is served and being retired"


def run(make_store: StoreFactory, examples: int) -> None:
    run_state_machine_as_test(
        lambda: Retirement(make_store),  # type: ignore[arg-type]  # hypothesis accepts any factory; its stub says type
        settings=settings(
            max_examples=examples,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_retirement_never_loses_or_doubles_statistics_in_memory() -> None:
    run(lambda clock: MemoryStore(clock=clock), examples=300)


@pytest.mark.integration
def test_retirement_never_loses_or_doubles_statistics_on_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    def fresh(clock: Callable[[], float]) -> Store:
        client.flushdb()  # the fleet's records are server-wide: each example starts clean
        return RedisStore(client, clock=clock)

    run(fresh, examples=60)
