"""The store interface (statistics, request contexts, credits) and its embedded implementation.

The Redis implementation is ``streaming/redis_store.py``, the one module that talks to Redis;
both pass the same contract tests (``tests/streaming/test_store_contract.py``).

Semantics every store keeps
---------------------------
- Statistics are namespaced by bundle ``version``: a new clustering changes what every
  coordinate means, so a new version starts empty.
- Per (item, coordinate) the store holds ``w2`` and ``b`` (``bandits/README.md``); a missing
  entry reads as 0, i.e. ``d = λ``.
- **Exactly-once apply.** Each item remembers, per Kafka partition, the highest offset applied
  (its watermark). An ``ItemDelta`` covers the item's events at offsets
  ``min_offset..offset`` of one partition and is applied, with its credits, in one atomic step
  only when the watermark is below ``min_offset``. At or above ``offset`` it was applied already
  (``DUPLICATE``: a redelivered batch). In between, part of it was applied by another consumer
  (a rebalance overlap): ``CONFLICT``, and the consumer recomputes that item from fresh state.
- **Credits.** At most one impression, one click and one reward are credited per
  (request, item): the flags ``i``, ``c``, ``r`` are set in the same atomic step as the
  statistics and expire with the attribution window.
- Request contexts are stored under their request id with the attribution-window TTL.
- Surface settings are one JSON document per surface, shared by every API replica; each
  change is appended to a capped log (who, when, old → new).
- Trending scores per (version, item), the ``TRENDING_KEEP`` highest of a version, derived
  from its statistics by the consumers (``streaming/consumer.py``); deleted with the version.
- Operator counters are integers per (surface, minute, field), written by the API and the
  consumers, expiring after ``STATS_TTL_S`` so they cannot grow without bound. Consumer lag is
  a gauge per (group, partition).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np

from bandits.checks import FloatArray, IntArray
from streaming.events import RequestContext

# Trending items kept per version (the highest scores): far more than any request reads, few
# enough that the sorted set stays small.
TRENDING_KEEP = 1000


class StoreUnavailable(RuntimeError):
    """The store did not answer; serving degrades to priors, the consumer retries its batch."""


class Applied(IntEnum):
    CONFLICT = -1
    DUPLICATE = 0
    APPLIED = 1


@dataclass(frozen=True)
class ItemDelta:
    """Summed statistics for one item from one partition's offsets ``min_offset..offset``.

    Attributes
    ----------
    item : item id
    min_offset, offset : lowest and highest offset of the events summed here
    coords : (M,) int64 coordinates
    w2 : (M,) float64 Σ w² per coordinate
    b : (M,) float64 Σ w·(r − p) per coordinate
    credits : request id → flags newly credited by these events (subset of ``"icr"``)
    """

    item: str
    min_offset: int
    offset: int
    coords: IntArray
    w2: FloatArray
    b: FloatArray
    credits: dict[str, str] = field(default_factory=dict)


class Store(Protocol):
    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        """Return ``(w2, b)``, each (len(items), len(coords)), in one round trip."""
        ...

    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        """Highest applied offset per item for ``partition`` (-1 when none)."""
        ...

    def credits(self, version: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Flags already credited per (item, request id) ('' when none)."""
        ...

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta], credit_ttl_s: float) -> list[Applied]:
        """Apply each delta atomically, per the rules above; one result per delta."""
        ...

    def read_state(
        self, marks: Sequence[tuple[str, int, str]], pairs: Sequence[tuple[str, str, str]]
    ) -> tuple[list[int], list[str]]:
        """``watermarks`` of each (version, partition, item) and ``credits`` of each (version,
        item, request id), in order, in one round trip (per node): a consumer batch's reads."""
        ...

    def apply_many(
        self, batches: Sequence[tuple[str, int, Sequence[ItemDelta]]], credit_ttl_s: float
    ) -> list[list[Applied]]:
        """``apply`` of each (version, partition, deltas), in one round trip (per node) after
        the versions are listed; one result list per batch. Each delta keeps the rules above
        (atomic per item); nothing is atomic across batches, nor needs to be."""
        ...

    def put_context(self, context: RequestContext, ttl_s: float) -> None: ...

    def get_contexts(self, request_ids: Sequence[str]) -> dict[str, RequestContext]:
        """Contexts still within their TTL (missing ids are absent), in one round trip."""
        ...

    def get_surfaces(self) -> dict[str, bytes]: ...

    def put_surface(self, name: str, value: bytes, change: bytes) -> None:
        """Store a surface's settings and append ``change`` to the change log, atomically."""
        ...

    def surface_changes(self, limit: int) -> list[bytes]:
        """Newest first."""
        ...

    def incr_stats(self, increments: Sequence[Increment]) -> None:
        """Add to per-minute counters (one round trip); each bucket expires after ``STATS_TTL_S``."""
        ...

    def read_stats(self, surface: str, minutes: Sequence[int]) -> list[dict[str, int]]:
        """One dict of counters per minute, in order (empty where nothing was counted)."""
        ...

    def stats_surfaces(self) -> set[str]:
        """Surfaces that have counters."""
        ...

    def count_impressions(self, version: str, counts: dict[str, int]) -> dict[str, int]:
        """Add to per-item impression counts (fresh items only); return the new totals."""
        ...

    def put_trending(self, version: str, scores: dict[str, float], keep: int) -> None:
        """Set the trending scores of these items (``bandits.pooled.trending_scores``), keeping
        only the ``keep`` highest of the version. Derived from the statistics, so rewriting
        them is idempotent: a lost write is repaired by the item's next update."""
        ...

    def trending(self, version: str, n: int) -> list[str]:
        """The ``n`` items with the highest positive trending scores, best first."""
        ...

    def add_clicks(self, clicks: Sequence[tuple[str, str, float]], keep: int, ttl_s: float) -> None:
        """Record ``(user_id, item_id, ts)`` clicks in each user's recent clicks: a set of items
        with their latest click time, the ``keep`` latest only, dropped ``ttl_s`` after the
        user's last click. Idempotent (a set), so a redelivered batch changes nothing."""
        ...

    def recent_clicks(self, user_id: str, n: int) -> list[str]:
        """The user's ``n`` most recently clicked items, latest first."""
        ...

    def gather_live(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray, int]:
        """``gather`` plus the live catalogue's sequence number, in the same round trip."""
        ...

    def put_item(self, item_id: str, ts: float, record: bytes) -> int | None:
        """Store a catalogue record (``streaming.catalogue.ItemRecord``) if it is newer (``ts``)
        than the item's stored one, atomically taking the next catalogue sequence number;
        return that number, or None when the stored record is newer or as new but different.
        The identical record again returns the number it already has (its writer and the
        topic's follower may both apply it, in either order)."""
        ...

    def items_since(self, seq: int, limit: int) -> tuple[list[tuple[int, bytes]], int]:
        """The latest record of every item changed after ``seq``, by sequence number (at most
        ``limit``), and the catalogue's current sequence number."""
        ...

    def get_item(self, item_id: str) -> bytes | None: ...

    def put_lag(self, group: str, lag: dict[int, int]) -> None: ...

    def get_lag(self, group: str) -> dict[int, int]: ...

    def heartbeat(self, version: str, now: float) -> bool:
        """A serving replica reports that it serves ``version`` at ``now`` (epoch seconds), before
        it answers any request from it and then periodically. ``False`` (nothing written) while
        the version is being retired: the replica must not start serving it then."""
        ...

    def serving_versions(self) -> dict[str, float]:
        """Version → the latest report of any replica serving it."""
        ...

    def stats_versions(self) -> dict[str, float]:
        """Versions that have a statistics namespace → when it was first written (epoch s,
        the store's clock). A namespace is listed before anything is written into it."""
        ...

    def retiring_versions(self) -> set[str]:
        """Versions marked by ``begin_retire`` whose ``drop_version`` has not finished."""
        ...

    def begin_retire(self, version: str, now: float, grace_s: float, lease_s: float) -> bool:
        """Atomically re-check ``retirable`` for ``version`` against the store's current state and,
        if it holds (or the version is already marked), mark it retiring: from then on
        ``heartbeat`` refuses it. ``True`` when marked."""
        ...

    def drop_version(self, version: str) -> int:
        """Delete a version marked by ``begin_retire``: its namespace (statistics, watermarks,
        credits, fresh-item counts), its listing, its serving record, then its mark; return the
        number of entries deleted (0, deleting nothing, for an unmarked version). Every step is
        taken only while the mark stands, so of several consumers finishing one version, none
        deletes anything once another has finished (a replica may serve it again then). The
        listing goes first, so an apply racing the deletion lists the namespace again and
        nothing it writes can outlive the listing."""
        ...

    def take(self, charges: Sequence[Charge]) -> list[float]:
        """Charge each rate limit (``Charge``) by the generic cell rate algorithm: a limit of
        ``rate`` per second with ``burst`` refuses a cost that would take its debt past
        ``burst / rate`` seconds. Returns, per charge, 0 when it was taken, else the seconds
        after which it would be. Each limit is checked and charged on its own (atomically per
        limit, so several replicas share it): a refused limit is not charged, the others that
        took the cost are (conservative). A cost above the burst is charged as the burst."""
        ...

    def ping(self) -> bool: ...


# How long a replica may go on storing request contexts for a version after its last report
# that landed (app/lease.py). Retirement adds it to the grace period: a report is proof of
# serving until a lease later, not only at the instant it was written.
SERVING_LEASE_S = 30.0


def retirable(
    stats_versions: dict[str, float],
    serving: dict[str, float],
    retiring: set[str],
    now: float,
    grace_s: float,
    lease_s: float = SERVING_LEASE_S,
) -> list[str]:
    """The policy for a bundle version change: which namespaces may be deleted.

    Parameters
    ----------
    stats_versions : version → when its statistics namespace was first written
    serving : version → the latest report of any replica serving it
    retiring : versions already marked by a retirement pass (finished, whatever else holds)
    now : epoch seconds
    grace_s : how long after the last request served from a version feedback may still be
        applied to it: the attribution window plus clock skew and consumer delay
    lease_s : how long a replica may serve after its last report (``SERVING_LEASE_S``)

    The invariant: a namespace that any replica may be serving, or that may still get
    feedback, is never deleted. It holds by construction, not by timing, because of three rules
    kept by the replicas and the store:

    1. **Report before serving.** A replica reports a version (``Store.heartbeat``) before it
       answers a request from it, and stores a request context (the only thing feedback can be
       joined to) only within ``lease_s`` of a report that landed. So the last context of a
       version is stored at most ``lease_s`` after its latest report, and its last feedback is
       applied at most ``grace_s`` after that: a version is retirable only when its latest
       report is older than ``grace_s + lease_s``.
    2. **A version nobody has reported is judged by its first write.** A namespace written
       with no serving record (by a replica of an older release mid-upgrade that swapped
       without reporting, or after its record was lost) is kept until it has existed
       unreported for the same period. Where a record exists it is the evidence, since it
       bounds the last context stored.
    3. **Check and mark atomically, then delete.** ``Store.begin_retire`` re-checks this rule
       against the store's state and marks the version in one atomic step; from then on reports
       of it are refused, so no replica can start serving a version while its statistics are
       being deleted. A swap to it waits until the deletion ends and then starts empty.

    With no live report from any replica there is no evidence of what is served, so only
    versions already marked are returned. Versions with a serving record but no statistics are
    returned too, so that stale records do not pile up.

    Returns the versions to retire, sorted.

    >>> born = {"v1": 0.0, "v2": 500.0, "v3": 990.0}
    >>> retirable(born, {"v2": 990.0, "v1": 100.0}, set(), now=1000.0, grace_s=60.0, lease_s=30.0)
    ['v1']
    >>> retirable(born, {"v1": 100.0}, set(), now=1000.0, grace_s=60.0, lease_s=30.0)  # none live: keep
    []
    >>> retirable(born, {"v1": 100.0}, {"v1"}, now=1000.0, grace_s=60.0, lease_s=30.0)  # finish a mark
    ['v1']
    """
    horizon = grace_s + lease_s
    live = {v for v, seen in serving.items() if now - seen <= horizon}
    if not live:
        return sorted(retiring)
    known = set(stats_versions) | set(serving) | retiring

    def last_evidence(v: str) -> float:
        return serving[v] if v in serving else stats_versions.get(v, -np.inf)

    return sorted(v for v in known if v in retiring or (v not in live and now - last_evidence(v) > horizon))


def retire_versions(store: Store, now: float, grace_s: float, lease_s: float | None = None) -> dict[str, int]:
    """One retirement pass: plan with ``retirable``, mark each version atomically
    (``begin_retire``, which re-checks), then delete it. Version → entries deleted.
    ``lease_s`` defaults to ``SERVING_LEASE_S`` as it is when called."""
    lease_s = SERVING_LEASE_S if lease_s is None else lease_s
    plan = retirable(store.stats_versions(), store.serving_versions(), store.retiring_versions(), now, grace_s, lease_s)
    return {v: store.drop_version(v) for v in plan if store.begin_retire(v, now, grace_s, lease_s)}


@dataclass(frozen=True)
class Charge:
    """One rate limit's share of a request: ``subject`` (``user:<id>``, ``client:<address>``)
    is charged ``cost`` units against ``rate`` per second with a ``burst``."""

    subject: str
    cost: float
    rate: float
    burst: float


def gcra(tat: float, now: float, charge: Charge) -> tuple[float, float]:
    """The generic cell rate algorithm for one charge: (new theoretical arrival time, wait).

    ``tat`` is when the subject's debt is paid (``now`` or earlier: none). The cost is taken
    (the first result is the new ``tat``) when ``wait`` is 0; otherwise nothing is, and
    ``wait`` is the seconds after which it would be.

    >>> gcra(0.0, 10.0, Charge("user:a", cost=5, rate=1.0, burst=10))
    (15.0, 0.0)
    >>> gcra(25.0, 10.0, Charge("user:a", cost=5, rate=1.0, burst=10))  # 15 s of debt: wait 10
    (25.0, 10.0)
    """
    start = max(tat, now)
    new = start + min(charge.cost, charge.burst) / charge.rate
    wait = new - now - charge.burst / charge.rate
    return (tat, wait) if wait > 0 else (new, 0.0)


SURFACE_LOG_LENGTH = 1000
STATS_TTL_S = 2 * 3600
# Minute 0 holds an experiment arm's running totals (streaming/opstats.py): kept this long past
# its last write, so an arm idle for hours keeps its record, and an ended experiment's final
# figures stay readable for a month.
TOTAL_MINUTE = 0
STATS_TOTAL_TTL_S = 30 * 86400

# (surface, minute since the epoch, field, amount)
Increment = tuple[str, int, str, int]


def merge_flags(current: str, new: str) -> str:
    return current + "".join(ch for ch in new if ch not in current)


class MemoryStore:
    """The embedded default: the same semantics in process, thread-safe; TTLs on a monotonic
    clock; ``clock`` (epoch seconds) dates the first write of each namespace."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._born: dict[str, float] = {}
        self._retiring: set[str] = set()
        self._stats: dict[tuple[str, str], dict[int, list[float]]] = {}
        self._marks: dict[tuple[str, str], dict[int, int]] = {}
        self._credits: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._contexts: dict[str, tuple[bytes, float]] = {}
        self._surfaces: dict[str, bytes] = {}
        self._changes: list[bytes] = []
        self._counters: dict[tuple[str, int], dict[str, int]] = {}
        self._counters_written: dict[tuple[str, int], float] = {}  # bucket → last write (its TTL's start)
        self._lag: dict[str, dict[int, int]] = {}
        self._impressions: dict[tuple[str, str], int] = {}
        self._trending: dict[str, dict[str, float]] = {}
        self._clicks: dict[str, tuple[dict[str, float], float]] = {}  # user → (item → ts, expiry)
        self._items: dict[str, tuple[float, bytes]] = {}
        self._item_seq: dict[str, int] = {}
        self._catalogue_seq = 0
        self._serving: dict[str, float] = {}
        self._tats: dict[str, float] = {}  # rate limit subject → theoretical arrival time (monotonic)
        self._lock = threading.Lock()

    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        w2 = np.zeros((len(items), len(coords)))
        b = np.zeros((len(items), len(coords)))
        with self._lock:
            for i, item in enumerate(items):
                cells = self._stats.get((version, item))
                if not cells:
                    continue
                for k, f in enumerate(coords.tolist()):
                    cell = cells.get(f)
                    if cell is not None:
                        w2[i, k], b[i, k] = cell
        return w2, b

    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {item: self._marks.get((version, item), {}).get(partition, -1) for item in items}

    def credits(self, version: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        now = time.monotonic()
        with self._lock:
            out = {}
            for item, request_id in pairs:
                flags, expires = self._credits.get((version, item, request_id), ("", 0.0))
                out[(item, request_id)] = flags if expires > now else ""
            return out

    def read_state(
        self, marks: Sequence[tuple[str, int, str]], pairs: Sequence[tuple[str, str, str]]
    ) -> tuple[list[int], list[str]]:
        now = time.monotonic()
        with self._lock:
            found = [self._marks.get((version, item), {}).get(partition, -1) for version, partition, item in marks]
            flags = []
            for key in pairs:
                current, expires = self._credits.get(key, ("", 0.0))
                flags.append(current if expires > now else "")
        return found, flags

    def apply_many(
        self, batches: Sequence[tuple[str, int, Sequence[ItemDelta]]], credit_ttl_s: float
    ) -> list[list[Applied]]:
        return [self.apply(version, partition, deltas, credit_ttl_s) for version, partition, deltas in batches]

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta], credit_ttl_s: float) -> list[Applied]:
        now = time.monotonic()
        results = []
        with self._lock:
            self._born.setdefault(version, self._clock())
            for delta in deltas:
                marks = self._marks.setdefault((version, delta.item), {})
                mark = marks.get(partition, -1)
                if mark >= delta.offset:
                    results.append(Applied.DUPLICATE)
                    continue
                if mark >= delta.min_offset:
                    results.append(Applied.CONFLICT)
                    continue
                for request_id, flags in delta.credits.items():
                    key = (version, delta.item, request_id)
                    current, expires = self._credits.get(key, ("", 0.0))
                    current = current if expires > now else ""
                    self._credits[key] = (merge_flags(current, flags), now + credit_ttl_s)
                cells = self._stats.setdefault((version, delta.item), {})
                for f, w2, b in zip(delta.coords.tolist(), delta.w2.tolist(), delta.b.tolist(), strict=True):
                    cell = cells.setdefault(f, [0.0, 0.0])
                    cell[0] += w2
                    cell[1] += b
                marks[partition] = delta.offset
                results.append(Applied.APPLIED)
        return results

    def put_context(self, context: RequestContext, ttl_s: float) -> None:
        with self._lock:
            self._contexts[context.request_id] = (context.encode(), time.monotonic() + ttl_s)
            if len(self._contexts) % 4096 == 0:
                self._evict(time.monotonic())

    def get_contexts(self, request_ids: Sequence[str]) -> dict[str, RequestContext]:
        now = time.monotonic()
        with self._lock:
            found = {rid: self._contexts.get(rid) for rid in request_ids}
        return {rid: RequestContext.decode(v[0]) for rid, v in found.items() if v is not None and v[1] > now}

    def get_surfaces(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._surfaces)

    def put_surface(self, name: str, value: bytes, change: bytes) -> None:
        with self._lock:
            self._surfaces[name] = value
            self._changes.insert(0, change)
            del self._changes[SURFACE_LOG_LENGTH:]

    def surface_changes(self, limit: int) -> list[bytes]:
        with self._lock:
            return self._changes[:limit]

    def incr_stats(self, increments: Sequence[Increment]) -> None:
        # As Redis's EXPIRE after each write: a bucket lasts STATS_TTL_S past its last write
        # (an experiment's running-total bucket, streaming/opstats.py, lives on while written).
        now = self._clock()
        with self._lock:
            for surface, minute, name, amount in increments:
                bucket = self._counters.setdefault((surface, minute), {})
                bucket[name] = bucket.get(name, 0) + amount
                self._counters_written[(surface, minute)] = now
            for key in [
                k
                for k, t in self._counters_written.items()
                if t < now - (STATS_TOTAL_TTL_S if k[1] == TOTAL_MINUTE else STATS_TTL_S)
            ]:
                del self._counters[key], self._counters_written[key]

    def read_stats(self, surface: str, minutes: Sequence[int]) -> list[dict[str, int]]:
        with self._lock:
            return [dict(self._counters.get((surface, m), {})) for m in minutes]

    def stats_surfaces(self) -> set[str]:
        with self._lock:
            return {surface for surface, _ in self._counters}

    def count_impressions(self, version: str, counts: dict[str, int]) -> dict[str, int]:
        with self._lock:
            out = {}
            for item, n in counts.items():
                total = self._impressions.get((version, item), 0) + n
                self._impressions[(version, item)] = total
                out[item] = total
            return out

    def put_trending(self, version: str, scores: dict[str, float], keep: int) -> None:
        with self._lock:
            table = self._trending.setdefault(version, {})
            table.update(scores)
            if len(table) > keep:
                self._trending[version] = dict(sorted(table.items(), key=lambda kv: -kv[1])[:keep])

    def trending(self, version: str, n: int) -> list[str]:
        with self._lock:
            table = self._trending.get(version, {})
            best = sorted(((-score, item) for item, score in table.items() if score > 0))[:n]
        return [item for _, item in best]

    def add_clicks(self, clicks: Sequence[tuple[str, str, float]], keep: int, ttl_s: float) -> None:
        with self._lock:
            now = time.monotonic()
            for user, item, ts in clicks:
                table, _ = self._clicks.get(user, ({}, 0.0))
                table[item] = max(ts, table.get(item, ts))
                if len(table) > keep:
                    table = dict(sorted(table.items(), key=lambda kv: (kv[1], kv[0]))[-keep:])
                self._clicks[user] = (table, now + ttl_s)

    def recent_clicks(self, user_id: str, n: int) -> list[str]:
        with self._lock:
            table, expires = self._clicks.get(user_id, ({}, 0.0))
            if expires <= time.monotonic():
                self._clicks.pop(user_id, None)
                return []
            return [item for item, _ in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def gather_live(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray, int]:
        w2, b = self.gather(version, items, coords)
        with self._lock:
            return w2, b, self._catalogue_seq

    def put_item(self, item_id: str, ts: float, record: bytes) -> int | None:
        with self._lock:
            stored = self._items.get(item_id)
            if stored is not None and stored[0] == ts and stored[1] == record:
                return self._item_seq[item_id]  # the same change again: it landed already
            if stored is not None and stored[0] >= ts:
                return None
            self._catalogue_seq += 1
            self._items[item_id] = (ts, record)
            self._item_seq[item_id] = self._catalogue_seq
            return self._catalogue_seq

    def items_since(self, seq: int, limit: int) -> tuple[list[tuple[int, bytes]], int]:
        with self._lock:
            changed = sorted((n, item) for item, n in self._item_seq.items() if n > seq)[:limit]
            return [(n, self._items[item][1]) for n, item in changed], self._catalogue_seq

    def get_item(self, item_id: str) -> bytes | None:
        with self._lock:
            stored = self._items.get(item_id)
        return None if stored is None else stored[1]

    def put_lag(self, group: str, lag: dict[int, int]) -> None:
        with self._lock:
            self._lag[group] = dict(lag)

    def get_lag(self, group: str) -> dict[int, int]:
        with self._lock:
            return dict(self._lag.get(group, {}))

    def heartbeat(self, version: str, now: float) -> bool:
        with self._lock:
            if version in self._retiring:
                return False
            self._serving[version] = max(now, self._serving.get(version, now))
            return True

    def serving_versions(self) -> dict[str, float]:
        with self._lock:
            return dict(self._serving)

    def stats_versions(self) -> dict[str, float]:
        with self._lock:
            return dict(self._born)

    def retiring_versions(self) -> set[str]:
        with self._lock:
            return set(self._retiring)

    def begin_retire(self, version: str, now: float, grace_s: float, lease_s: float) -> bool:
        with self._lock:
            planned = retirable(self._born, self._serving, self._retiring, now, grace_s, lease_s)
            if version in planned:
                self._retiring.add(version)
            return version in self._retiring

    def drop_version(self, version: str) -> int:
        with self._lock:
            if version not in self._retiring:
                return 0
            self._born.pop(version, None)
            before = len(self._stats) + len(self._marks) + len(self._impressions) + len(self._credits)
            self._stats = {k: v for k, v in self._stats.items() if k[0] != version}
            self._marks = {k: v for k, v in self._marks.items() if k[0] != version}
            self._impressions = {k: v for k, v in self._impressions.items() if k[0] != version}
            self._credits = {k: v for k, v in self._credits.items() if k[0] != version}
            before += len(self._trending.pop(version, {}))
            self._serving.pop(version, None)
            self._retiring.discard(version)
            return before - (len(self._stats) + len(self._marks) + len(self._impressions) + len(self._credits))

    def _evict(self, now: float) -> None:
        # Amortised expiry so an embedded run cannot grow without bound.
        for rid in [rid for rid, (_, exp) in self._contexts.items() if exp <= now]:
            del self._contexts[rid]
        for key in [key for key, (_, exp) in self._credits.items() if exp <= now]:
            del self._credits[key]

    def take(self, charges: Sequence[Charge]) -> list[float]:
        now = time.monotonic()
        waits = []
        with self._lock:
            if len(self._tats) > 100_000:  # forget subjects that owe nothing
                self._tats = {k: t for k, t in self._tats.items() if t > now}
            for charge in charges:
                tat, wait = gcra(self._tats.get(charge.subject, now), now, charge)
                self._tats[charge.subject] = tat
                waits.append(wait)
        return waits

    def ping(self) -> bool:
        return True
