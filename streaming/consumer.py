"""The feedback consumer: join events to request contexts, credit, sum, apply, then commit.

``build_deltas`` is the whole of the logic, a pure function of one partition's events and the
state it needs (contexts, watermarks, credits): unit tests need no broker. ``FeedbackConsumer``
owns the order that makes the effect exactly-once: poll → read state → apply to the store
(idempotent by watermark) → dead letters acknowledged → commit offsets.

Credit rules per (request, item), with ``e`` the examination weight of the slot the item was
served in (1 without a position model): the first impression adds ``(w·e)²`` to ``w2`` and
``−w·e²·p`` to ``b``; the first click adds ``w·e`` to ``b``, the first reward ``w·e·value``; a
click or reward whose impression was never reported credits the impression too (it was seen).
Everything else for that pair is a duplicate and changes nothing.

Calibration. Each newly credited impression adds ``e`` to the exposure, and each newly credited
click 1 to the clicks, of its raw prior's bin in the surface's calibration pseudo-item
(``streaming.events.calibration_item``), which goes through the same watermarks as any item:
exactly once. In the rare case of a rebalance overlap that partly applied it (``CONFLICT``),
that batch's calibration delta is dropped rather than recomputed: a few events fewer in a
statistical estimate, never one counted twice. Impressions and clicks of randomised slates
count per position in the surface's examination pseudo-item the same way.

Recent clicks. Each newly credited click joins its user's recent clicks (``Store.add_clicks``,
a set per user, written before the statistics so that a redelivery re-adds rather than
misses); serving folds them into her embedding.

Trending. After a batch, each item whose pooled residual it changed is re-scored from the
store (``bandits.pooled.trending_scores``) into the version's trending list; serving adds the
list's top to every request's candidates, so an item that turns into a hit in one cluster
reaches every user within a second or two (``app/trending.py``).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from bandits.calibration import BINS, bin_index
from bandits.checks import FloatArray, IntArray
from bandits.pooled import trending_scores
from streaming.bus import Bus, BusUnavailable, CommitFailed, Message, Record
from streaming.events import (
    EventError,
    FeedbackEvent,
    RequestContext,
    calibration_item,
    check_key_part,
    examination_item,
)
from streaming.opstats import (
    FRESH_AGE_S,
    FRESH_IMPRESSIONS,
    FRESHNESS_MS,
    Counters,
    age_bucket,
    bucket,
    clicks_sq_increment,
    coin_credits,
    coin_field,
)
from streaming.stores import TRENDING_KEEP, Applied, ItemDelta, Store, StoreUnavailable, retire_versions

log = structlog.get_logger(__name__)

FLAG = {"impression": "i", "click": "c", "reward": "r"}
CREDITED = {kind: f"credited_{kind}" for kind in FLAG}  # the batch counter of each event type
UNKNOWN_SURFACE = "_unknown"  # dead letters whose request context is gone
# Beyond the attribution window, before an unserved version's statistics go: clock skew between
# hosts and the time a consumer may hold a joined batch before applying it. The serving lease
# (streaming.stores.SERVING_LEASE_S) is added by retirement itself.
RETIRE_SLACK_S = 120.0
# Each user's recent clicks (``Store.add_clicks``): at most the surface setting ``fold_in_clicks``
# allows, kept for a month after her last click.
CLICKS_KEEP = 50
CLICKS_TTL_S = 30 * 86400.0


@dataclass(frozen=True)
class DeadLetter:
    key: bytes
    value: bytes
    reason: str


@dataclass
class PartitionWork:
    """Deltas for one partition, grouped by statistics version."""

    deltas: dict[str, list[ItemDelta]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    # Operator counters (streaming/opstats.py): (surface, field) → n, and per-surface event
    # times and fresh-item impressions of what was newly credited.
    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    surface_ts: list[tuple[str, float]] = field(default_factory=list)
    fresh_impressions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (version, item) → its pool coordinate, for items whose residual was learnt (trending).
    pools: dict[tuple[str, str], int] = field(default_factory=dict)
    # Newly credited clicks as (user_id, item_id, ts), for each user's recent clicks (serving
    # folds them into her embedding: app/recommender.py, ``fold_in``).
    clicks: list[tuple[str, str, float]] = field(default_factory=list)


def build_deltas(
    events: Sequence[tuple[int, FeedbackEvent]],
    contexts: dict[str, RequestContext],
    marks: dict[tuple[str, str], int],
    credited: dict[tuple[str, str, str], str],
) -> PartitionWork:
    """Turn one partition's events, in offset order, into per-(version, item) deltas.

    Parameters
    ----------
    events : (offset, event) pairs of one partition, ascending offsets
    contexts : request id → stored context (absent: expired or unknown)
    marks : (version, item) → highest offset already applied from this partition
    credited : (version, item, request id) → flags already credited

    >>> ctx = RequestContext("r1", "home", "v1", [2], [1.0], {"a": (0.2, False)}, 0.0)
    >>> ev = FeedbackEvent("e1", "r1", "a", "click", 1.0, 0.0)
    >>> work = build_deltas([(5, ev)], {"r1": ctx}, {}, {})
    >>> d = work.deltas["v1"][0]
    >>> d.item, d.offset, d.w2.tolist(), [round(x, 3) for x in d.b.tolist()], d.credits
    ('a', 5, [1.0], [0.8], {'r1': 'ci'})
    """
    work = PartitionWork()
    # The credit decisions are sequential (dict lookups); the sums are one numpy pass below.
    span: dict[tuple[str, str], list[int]] = {}
    new_credits: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    rows: list[tuple[tuple[str, str], RequestContext, float, float]] = []  # key, ctx, w2 factor, b factor
    # (version, pseudo-item) → coordinate → [exposure, clicks]: the calibration's bins
    # (bandits/calibration.py) and the randomised slates' positions (bandits/position.py)
    calibration: dict[tuple[str, str], dict[int, list[float]]] = {}
    # Bound once: this loop runs per event, and attribute lookups were a visible part of it.
    counts, ops = work.counts, work.ops
    for offset, ev in events:
        ctx = contexts.get(ev.request_id)
        served = None if ctx is None else ctx.items.get(ev.item_id)
        if ctx is None or served is None:
            reason = "unknown_request" if ctx is None else "item_not_served"
            work.dead.append(DeadLetter(ev.item_id.encode(), ev.encode(), reason))
            counts[f"dead_{reason}"] += 1
            ops[(ctx.surface if ctx is not None else UNKNOWN_SURFACE, "dead")] += 1
            continue
        key = (ctx.namespace, ev.item_id)
        if offset <= marks.get(key, -1):
            counts["redelivered"] += 1
            continue
        low_high = span.setdefault(key, [offset, offset])
        low_high[1] = offset
        item_credits = new_credits[key]
        pending = item_credits.get(ev.request_id, "")
        have = credited.get((ctx.namespace, ev.item_id, ev.request_id), "") + pending
        flag = FLAG[ev.type]
        # One outcome per served item: its first click or reward. A click and a reward on the
        # same item would otherwise teach two outcomes, and no sequence of valid feedback on one
        # request may move an item more than one outcome at the surface's top reward.
        if flag in have or (flag in "cr" and ("c" in have or "r" in have)):
            counts["duplicate"] += 1
            continue
        gained = flag if flag == "i" or "i" in have else flag + "i"
        prior, explored = served
        e = ctx.exam.get(ev.item_id, 1.0)
        if ev.position is not None and ctx.curve:
            # The client re-ordered the slate: weigh by where it really showed the item.
            e = ctx.curve[min(ev.position, len(ctx.curve) - 1)]
        lo, hi = ctx.rewards
        # Clipped here too: feedback accepted while the store was down was not checked at the edge.
        reward = min(max(1.0 if flag == "c" else ev.value if flag == "r" else 0.0, lo), hi) if flag != "i" else 0.0
        impression = "i" in gained
        # The examination-weighted regression of E[r] = e·(p + θ): w2 += (w·e)², b += w·e·(r − e·p).
        # Before the calibration is trusted (``learn`` False) the residual is not learnt, but the
        # impression still counts as seen at its prior (w2 only): otherwise every candidate of a
        # new surface keeps the same bonus, the UCB order equals the greedy one, and nothing is
        # explored during the warm-up (found by the random-order test runs).
        b_factor = e * reward - (e * e * prior if impression else 0.0)
        rows.append((key, ctx, e * e if impression else 0.0, b_factor if ctx.learn else 0.0))
        if ctx.pool >= 0 and ctx.learn:
            work.pools[key] = ctx.pool
        pseudo: list[tuple[str, int, float]] = []  # (pseudo-item, coordinate, exposure)
        if ctx.raw and (raw := ctx.raw.get(ev.item_id)) is not None:
            # Group-major coordinates: the calibration's map per popularity group.
            coord = ctx.groups.get(ev.item_id, 0) * BINS + bin_index(raw)
            pseudo.append((calibration_item(ctx.surface), coord, e))
        if ctx.randomized and (position := ctx.positions.get(ev.item_id)) is not None:
            pseudo.append((examination_item(ctx.surface), position, 1.0))
        for name, coord, exposure in pseudo:
            pseudo_key = (ctx.namespace, name)
            if offset > marks.get(pseudo_key, -1):
                pseudo_span = span.setdefault(pseudo_key, [offset, offset])
                pseudo_span[1] = offset
                cell = calibration.setdefault(pseudo_key, {}).setdefault(coord, [0.0, 0.0])
                cell[0] += exposure if impression else 0.0
                cell[1] += 1.0 if flag == "c" else 0.0
        item_credits[ev.request_id] = pending + gained
        counts[CREDITED[ev.type]] += 1
        work.surface_ts.append((ctx.surface, ev.ts))
        age = ctx.ages.get(ev.item_id) if ctx.ages else None
        fresh = age is not None and age < FRESH_AGE_S
        for surface in ctx.counter_surfaces:  # its surface's, and its experiment arm's
            if impression:
                ops[(surface, "imp_explored" if explored else "imp_exploited")] += 1
                if age is not None:
                    ops[(surface, age_bucket(age))] += 1
                if fresh:
                    ops[(surface, "imp_fresh")] += 1
            if flag == "c":
                ops[(surface, "clk_explored" if explored else "clk_exploited")] += 1
                if fresh:
                    ops[(surface, "clk_fresh")] += 1
        if impression and fresh:
            # Per bundle version, arms included: "fresh items reaching 50" is the surface's
            # count, and an item shown 40 times in each of two arms has reached it.
            work.fresh_impressions[(ctx.surface, ctx.version, ev.item_id)] += 1
        if flag == "c" and _key_part(ctx.user_id):  # older contexts have none; a bad one must not stall the batch
            work.clicks.append((ctx.user_id, ev.item_id, ev.ts if ev.ts > 0 else ctx.ts))
    sums = _sum_rows(rows)
    for key, cells in calibration.items():
        bins = sorted(cells)
        sums[key] = (
            np.array(bins, dtype=np.int64),
            np.array([cells[i][0] for i in bins]),
            np.array([cells[i][1] for i in bins]),
        )
    empty = (np.empty(0, np.int64), np.empty(0), np.empty(0))
    for key, (low, high) in span.items():
        version, item = key
        coords, w2, b = sums.get(key, empty)
        work.deltas.setdefault(version, []).append(
            ItemDelta(item, low, high, coords, w2, b, dict(new_credits.get(key, {})))
        )
    return work


def _key_part(value: str) -> bool:
    try:
        check_key_part("user_id", value)
    except EventError:
        return False
    return True


def _sum_rows(
    rows: list[tuple[tuple[str, str], RequestContext, float, float]],
) -> dict[tuple[str, str], tuple[IntArray, FloatArray, FloatArray]]:
    """Per (version, item): coordinates (M,), Σ w²·[impression] (M,), Σ w·(r − p·[impression]) (M,)."""
    if not rows:
        return {}
    keys = list(dict.fromkeys(key for key, *_ in rows))
    key_index = {key: i for i, key in enumerate(keys)}
    k = max(len(ctx.indices) for _, ctx, _, _ in rows)
    n = len(rows)
    item = np.fromiter((key_index[key] for key, *_ in rows), dtype=np.int64, count=n)
    imp = np.fromiter((r[2] for r in rows), dtype=np.float64, count=n)
    bval = np.fromiter((r[3] for r in rows), dtype=np.float64, count=n)
    idx = np.zeros((n, k), dtype=np.int64)
    w = np.zeros((n, k))
    if all(len(ctx.indices) == k for _, ctx, _, _ in rows):
        idx[:] = [ctx.indices for _, ctx, _, _ in rows]
        w[:] = [ctx.weights for _, ctx, _, _ in rows]
    else:
        for r, (_, ctx, _, _) in enumerate(rows):
            idx[r, : len(ctx.indices)] = ctx.indices
            w[r, : len(ctx.weights)] = ctx.weights
    stride = int(idx.max()) + 1
    cell = (item[:, None] * stride + idx).ravel()
    keep = w.ravel() != 0.0
    cells, inverse = np.unique(cell[keep], return_inverse=True)
    # Typed once for the whole batch (no copy: already these dtypes), then a view per item.
    w2: FloatArray = np.bincount(inverse, weights=(w * w * imp[:, None]).ravel()[keep], minlength=len(cells)).astype(
        np.float64, copy=False
    )
    b: FloatArray = np.bincount(inverse, weights=(w * bval[:, None]).ravel()[keep], minlength=len(cells)).astype(
        np.float64, copy=False
    )
    owner = cells // stride
    coord: IntArray = (cells % stride).astype(np.int64, copy=False)
    bounds = np.searchsorted(owner, np.arange(len(keys) + 1)).tolist()
    # Views, not copies: three small copies per item were a few percent of the consumer's CPU.
    return {key: (coord[lo:hi], w2[lo:hi], b[lo:hi]) for key, lo, hi in zip(keys, bounds[:-1], bounds[1:], strict=True)}


def apply_partitions(
    store: Store,
    parsed: dict[int, list[tuple[int, FeedbackEvent]]],
    contexts: dict[str, RequestContext],
    credit_ttl_s: float,
    touched: dict[tuple[str, int], set[str]],
) -> tuple[dict[int, PartitionWork], int]:
    """Apply each partition's events (ascending offsets) to the store, exactly once by watermark.

    Returns the work of the first pass per partition (its dead letters and counts) and how many
    items conflicted (another member applied part of their range) and were recomputed from fresh
    state. Adds to ``touched`` the items applied per (version, pool), for trending. Shared by the
    consumer and ``streaming.rebuild``, so a replay applies by exactly the same rules.

    The partitions of a round share their store round trips: one read of every watermark and
    credit (``Store.read_state``), one write of every user's clicks, one apply of every delta
    (``Store.apply_many``); per partition and step, they were a third of the consumer's time.
    Reading a round's state before any of it applies equals reading it partition by partition
    because no item is in two partitions of a round (``_rounds``): watermarks are per partition,
    and credits per item.
    """
    firsts: dict[int, PartitionWork] = {}
    conflicts = 0
    for partitions in _rounds(parsed, contexts):
        todo = {partition: parsed[partition] for partition in partitions}
        for attempt in range(5):
            works = _works_for(store, todo, contexts)
            if attempt == 0:
                firsts.update(works)  # counted from the first pass only: a retry adds no events
                # Before the statistics: a set, so a crash between the two and the redelivery
                # that follows re-add the same members; after them, the redelivery would find
                # the watermarks moved and the clicks would never reach the user's set.
                store.add_clicks([c for work in works.values() for c in work.clicks], CLICKS_KEEP, CLICKS_TTL_S)
            batches = [
                (version, partition, deltas)
                for partition, work in works.items()
                for version, deltas in work.deltas.items()
            ]
            conflicted: dict[int, set[str]] = defaultdict(set)
            for (version, partition, deltas), results in zip(
                batches, store.apply_many(batches, credit_ttl_s), strict=True
            ):
                pools = works[partition].pools
                for d, r in zip(deltas, results, strict=True):
                    if r == Applied.CONFLICT:
                        conflicted[partition].add(d.item)
                    elif r == Applied.APPLIED and (pool := pools.get((version, d.item))) is not None:
                        touched[(version, pool)].add(d.item)
            if not conflicted:
                break
            conflicts += sum(len(items) for items in conflicted.values())
            todo = {p: [(o, ev) for o, ev in parsed[p] if ev.item_id in items] for p, items in conflicted.items()}
        else:
            raise RuntimeError(f"partitions {sorted(todo)}: items kept conflicting; will retry the batch")
    return firsts, conflicts


def _rounds(parsed: dict[int, list[tuple[int, FeedbackEvent]]], contexts: dict[str, RequestContext]) -> list[list[int]]:
    """The partitions in rounds, in order, such that no (namespace, item) has events in two
    partitions of one round. Feedback is keyed by item, so that is one round, unless the topic's
    partitions changed: then a later partition reads the credits the earlier one wrote, as it
    would applied one by one. (Pseudo-items are in every partition; their watermarks are per
    partition and they have no credits.)

    >>> ctx = RequestContext("r", "home", "v1", [0], [1.0], {"a": (0.1, False), "b": (0.1, False)}, 0.0)
    >>> ev = {i: FeedbackEvent(i, "r", i, "impression", 0.0, 0.0) for i in "ab"}
    >>> _rounds({0: [(1, ev["a"])], 1: [(1, ev["b"])], 2: [(7, ev["a"])]}, {"r": ctx})
    [[0, 1], [2]]
    """
    rounds: list[tuple[list[int], set[tuple[str, str]]]] = []
    for partition, events in parsed.items():
        keys = {(ctx.namespace, ev.item_id) for _, ev in events if (ctx := contexts.get(ev.request_id)) is not None}
        for members, taken in rounds:
            if taken.isdisjoint(keys):
                members.append(partition)
                taken |= keys
                break
        else:
            rounds.append(([partition], keys))
    return [members for members, _ in rounds]


def update_trending(store: Store, touched: dict[tuple[str, int], set[str]]) -> None:
    """Re-score the items a batch changed (``bandits.pooled.trending_scores``), read back from
    the store so the score is the item's whole history, whichever consumer applied it. A
    derived value: if this write is lost, the item's next update repairs it."""
    try:
        for (version, pool), items in touched.items():
            ordered = sorted(items)
            n0, b0 = store.gather(version, ordered, np.array([pool], dtype=np.int64))
            scores = trending_scores(n0[:, 0], b0[:, 0])
            store.put_trending(version, dict(zip(ordered, scores.tolist(), strict=True)), TRENDING_KEEP)
    except StoreUnavailable:
        log.warning("trending_not_updated")


def _works_for(
    store: Store, todo: dict[int, list[tuple[int, FeedbackEvent]]], contexts: dict[str, RequestContext]
) -> dict[int, PartitionWork]:
    """``build_deltas`` per partition on the watermarks and credits the store holds for these
    events, read in one ``Store.read_state``."""
    marks: dict[tuple[str, int, str], None] = {}  # (version, partition, item), in first-seen order
    pairs: dict[tuple[str, str, str], None] = {}  # (version, item, request id)
    for partition, events in todo.items():
        for _, ev in events:
            ctx = contexts.get(ev.request_id)
            if ctx is not None:
                namespace = ctx.namespace
                marks[(namespace, partition, ev.item_id)] = None
                pairs[(namespace, ev.item_id, ev.request_id)] = None
                if ctx.raw:
                    marks[(namespace, partition, calibration_item(ctx.surface))] = None
                if ctx.randomized:
                    marks[(namespace, partition, examination_item(ctx.surface))] = None
    found_marks, found_flags = store.read_state(list(marks), list(pairs))
    by_partition: dict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    for (version, partition, item), mark in zip(marks, found_marks, strict=True):
        if mark >= 0:  # build_deltas reads an absent mark as -1
            by_partition[partition][(version, item)] = mark
    credited = {key: flags for key, flags in zip(pairs, found_flags, strict=True) if flags}
    return {
        partition: build_deltas(events, contexts, by_partition[partition], credited)
        for partition, events in todo.items()
    }


@dataclass
class ConsumerStats:
    batches: int = 0
    events: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    store_errors: int = 0
    last_apply_s: float = 0.0


class FeedbackConsumer:
    """Runs one member of the consumer group on the feedback topic."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        *,
        group: str = "onlinematch-feedback",
        feedback_topic: str = "feedback",
        dead_letter_topic: str = "feedback-dead-letter",
        attribution_window_s: float = 3600.0,
        max_records: int = 5000,
        poll_timeout_s: float = 0.2,
        on_applied: Callable[[list[float]], None] | None = None,
        on_batch: Callable[[Counter[str], int, float], None] | None = None,
        on_lag: Callable[[dict[int, int]], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        retire_every_s: float | None = 300.0,
    ) -> None:
        self._bus = bus
        self._store = store
        self._consumer = bus.consumer(group, [feedback_topic])
        self._producer = bus.producer()
        self._dlq_topic = dead_letter_topic
        self._window = attribution_window_s
        self._max_records = max_records
        self._poll_timeout_s = poll_timeout_s
        self._on_applied = on_applied
        self._on_batch = on_batch
        self._on_lag = on_lag
        self._on_error = on_error
        self._group = group
        self._lag_reported = 0.0
        self._batch_counts: Counter[str] = Counter()
        self._retire_every_s = retire_every_s
        self._retired_at = time.monotonic()  # the first retirement waits a period: no race at start-up
        self.stats = ConsumerStats()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once(stop)
            if self._retire_every_s is not None and time.monotonic() - self._retired_at >= self._retire_every_s:
                self.retire()
        self.close()

    def retire(self) -> dict[str, int]:
        """Delete the statistics of versions no replica has reported for the attribution window
        plus slack plus the serving lease (``streaming.stores.retirable``). Every consumer may run it: deleting twice is
        harmless. Returns version → entries deleted."""
        self._retired_at = time.monotonic()
        try:
            dropped = retire_versions(self._store, time.time(), self._window + RETIRE_SLACK_S)
        except StoreUnavailable as exc:
            log.warning("version_retirement_skipped", error=str(exc)[:200])
            return {}
        for version, n in dropped.items():
            log.info("version_retired", version=version, entries=n)
        return dropped

    def run_once(self, stop: threading.Event | None = None) -> int:
        with _no_cycle_collection():
            records = self._consumer.poll(self._max_records, self._poll_timeout_s)
        self._report_lag()
        if not records:
            return 0
        backoff = 0.05
        # Never skip a polled batch: retry it until the store and the broker take it.
        while True:
            try:
                with _no_cycle_collection():
                    self._process(records)
                break
            except (BusUnavailable, StoreUnavailable) as exc:
                self.stats.store_errors += 1
                log.warning("consumer_batch_retry", error=type(exc).__name__, detail=str(exc)[:200])
                if self._on_error is not None:
                    self._on_error(type(exc).__name__)
            if stop is not None and stop.is_set():
                return 0  # not committed: the group redelivers it
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        try:
            self._consumer.commit(_next_offsets(records))
        except CommitFailed as exc:
            # Effects are in the store behind watermarks; the new owner skips them.
            log.info("consumer_commit_after_rebalance", detail=str(exc)[:200])
        self.stats.batches += 1
        self.stats.events += len(records)
        if self._on_batch is not None:
            self._on_batch(self._batch_counts, len(records), self.stats.last_apply_s)
        return len(records)

    def _process(self, records: list[Record]) -> None:
        start = time.perf_counter()
        parsed: dict[int, list[tuple[int, FeedbackEvent]]] = defaultdict(list)
        dead: list[DeadLetter] = []
        batch_counts: Counter[str] = Counter()
        for rec in records:
            try:
                parsed[rec.partition].append((rec.offset, FeedbackEvent.decode(rec.value)))
            except EventError as exc:
                dead.append(DeadLetter(rec.key or b"", rec.value, f"malformed: {exc}"))
                batch_counts["dead_malformed"] += 1
        request_ids = sorted({ev.request_id for evs in parsed.values() for _, ev in evs})
        ops: list[PartitionWork] = []
        touched: dict[tuple[str, int], set[str]] = defaultdict(set)  # (version, pool) → items applied
        contexts = self._store.get_contexts(request_ids)
        for events in parsed.values():
            events.sort(key=lambda pair: pair[0])
        works, conflicts = apply_partitions(self._store, parsed, contexts, self._window, touched)
        self.stats.conflicts += conflicts
        for work in works.values():
            dead.extend(work.dead)
            batch_counts.update(work.counts)
            ops.append(work)
        if dead:
            self._producer.send_and_wait([Message(self._dlq_topic, d.key, _dead_value(d)) for d in dead], 5.0)
        update_trending(self._store, touched)
        self.stats.last_apply_s = time.perf_counter() - start
        self.stats.counts.update(batch_counts)
        self._batch_counts = batch_counts
        self._count(ops, contexts)
        applied_ts = [ts for work in ops for _, ts in work.surface_ts]
        if self._on_applied is not None and applied_ts:
            self._on_applied(applied_ts)

    def _count(self, works: list[PartitionWork], contexts: dict[str, RequestContext]) -> None:
        """Operator counters for what this batch newly credited (after the statistics: at most once)."""
        now = time.time()
        counters = Counters()
        # The explore coin's counters (streaming/opstats.py), from the credits just applied.
        credited = (
            (d.item, request_id, flags)
            for work in works
            for deltas in work.deltas.values()
            for d in deltas
            for request_id, flags in d.credits.items()
        )
        coin_ops, new_clicks = coin_credits(credited, contexts)
        for (surface, name), n in coin_ops.items():
            counters.add(surface, name, n, now)
        for request_id, total in self._clicks_now(new_clicks, contexts).items():
            ctx = contexts[request_id]
            field_name = coin_field(ctx.explore_coin, "clk2", ctx.explore_p)
            for surface in ctx.counter_surfaces:
                counters.add(surface, field_name, clicks_sq_increment(total, new_clicks[request_id]), now)
        fresh: Counter[tuple[str, str, str]] = Counter()
        for work in works:
            for (surface, name), n in work.ops.items():
                counters.add(surface, name, n, now)
            for surface, ts in work.surface_ts:
                if ts > 0:
                    counters.add(surface, bucket("fresh", max(0.0, now - ts) * 1000, FRESHNESS_MS), 1, now)
            fresh.update(work.fresh_impressions)
        by_version: dict[str, Counter[str]] = defaultdict(Counter)
        surface_of: dict[tuple[str, str], str] = {}
        for (surface, version, item), n in fresh.items():
            by_version[version][item] += n
            surface_of[(version, item)] = surface
        try:
            for version, counts in by_version.items():
                totals = self._store.count_impressions(version, dict(counts))
                for item, total in totals.items():
                    if total - counts[item] < FRESH_IMPRESSIONS <= total:
                        counters.add(surface_of[(version, item)], "fresh50", 1, now)
        except StoreUnavailable:
            log.warning("fresh_impressions_not_counted")
        counters.flush(self._store)

    def _clicks_now(self, requests: Counter[str], contexts: dict[str, RequestContext]) -> dict[str, int]:
        """Credited clicks of each request, over all its items, read after this batch applied
        (one read per version): never below the truth, so Σ c² is never understated. Without
        the store, each request's slot count stands in, an upper bound too."""
        by_version: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for request_id in requests:
            ctx = contexts[request_id]
            by_version[ctx.namespace] += [(item, request_id) for item in ctx.items]
        clicked: Counter[str] = Counter()
        try:
            for version, pairs in by_version.items():
                for (_, request_id), flags in self._store.credits(version, pairs).items():
                    clicked[request_id] += "c" in flags
        except StoreUnavailable:
            log.warning("coin_clicks_bounded_by_slots")
            return {request_id: len(contexts[request_id].items) for request_id in requests}
        return {request_id: clicked[request_id] for request_id in requests}

    def assignment(self) -> set[tuple[str, int]]:
        return self._consumer.assignment()

    def _report_lag(self) -> None:
        if time.monotonic() - self._lag_reported < 1.0:
            return
        self._lag_reported = time.monotonic()
        try:
            lag = self._consumer.lag()
            if self._on_lag is not None:
                self._on_lag(lag)
            self._store.put_lag(self._group, lag)
        except Exception as exc:  # a gauge for the dashboard; never worth stopping consumption
            log.warning("consumer_lag_not_reported", error=type(exc).__name__)

    def close(self) -> None:
        self._consumer.close()
        self._producer.close()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a batch is polled or processed. A batch makes
    tens of thousands of containers (records, events, contexts, dicts of credits) that live until
    it ends and are freed by reference counting; each allocation burst made the collector walk
    them, again and again as they aged (bench-consume's consumer under py-spy: 11,200 events/s,
    then 14,100 and 15,500 with this). Whatever cycles a batch leaves are collected once it is
    re-enabled.
    Process-wide, but only for one batch, and only re-enabled by whoever disabled it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        out[key] = max(out.get(key, 0), rec.offset + 1)
    return out


def _dead_value(dead: DeadLetter) -> bytes:
    import orjson

    return orjson.dumps({"reason": dead.reason, "event": dead.value.decode("utf-8", "replace")})
