"""``onlinematch rebuild`` (DESIGN flow 5): the statistics replayed from the topics.

Redis is a materialised view of Kafka. The ``decisions`` topic holds every served request's
context (``RequestContext``, what the feedback joins to), and ``feedback`` every accepted event
in the order the consumers applied it. Replaying both through the consumer's own rules
(``streaming.consumer.apply_partitions``: the same credits, the same per-partition watermarks,
the same sums) gives the same statistics. There are two targets:

- ``--suffix S``: beside the live namespaces, each version ``V`` rebuilt as ``V + S`` (an audit
  or a dry run; ``--verify`` compares it with ``V``). Such a copy is served by nobody, so the
  retirement pass deletes it like any unserved version, one grace period after it was written.
- ``--into URL``: an empty Redis, under the same version names, after the statistics store was
  lost. Request contexts still inside their attribution window are stored again, so that
  feedback on requests served before the loss is accepted and credited.

Procedure after a loss: stop the consumers, rebuild into the new Redis, start the consumers.
They resume from their committed offsets; whatever the rebuild already applied they skip by
watermark, so every event still counts exactly once.

What is replayed, and how the replay decides like the live consumer did
-------------------------------------------------------------------------
- The three topics are read up to one cut, the time the rebuild started, so a decision logged
  during the read cannot be missed by feedback read after it.
- An event counts only if its request's decision is in the log, the live consumer did not
  dead-letter it (the ``feedback-dead-letter`` topic, reason ``unknown_request``: its context
  had expired or was never stored), and it was produced inside its request's attribution
  window. Everything else is counted in the report and changes nothing.
- Resuming: the watermarks make a second pass over applied offsets a no-op, and the credits it
  writes live for ``REBUILD_CREDIT_TTL_S`` (not the attribution window) so that a run resumed
  within that time still recognises duplicates across the point where it stopped.

Retention the topics need
-------------------------
``decisions`` and ``feedback`` (and ``feedback-dead-letter``) must be retained for at least the
age of the oldest bundle version still served plus the attribution window: a version's
statistics are the sum of every event since its first request. The report marks a version
``partial`` when its first surviving decision is later than the version's birth in the live
store (if that store is reachable), or when a topic was truncated (its first offset above 0)
after the version's first request. Compacting either topic would lose events; they are
delete-retention topics.

Known differences from the live view
------------------------------------
- Decision records are sent without waiting (``send_nowait``) and resent until the broker takes
  them; only a full queue (10,000 records) drops one, counted in ``om_decision_log_dropped``.
  Feedback on a request whose decision was dropped was credited live but is not here
  (``missing_decision`` in the report).
- A calibration delta that a rebalance overlap made conflict is dropped live
  (``streaming/consumer.py``), and not here.
- Operator counters (minute buckets, fresh-item impressions) are not rebuilt: they are 2-hour
  observations, not state. The trending list is, from the rebuilt statistics.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import orjson
import structlog

from bandits.calibration import BINS
from bandits.checks import FloatArray, IntArray
from streaming.bus import Bus, Record, read_to_end
from streaming.consumer import RETIRE_SLACK_S, apply_partitions, update_trending
from streaming.events import (
    EventError,
    FeedbackEvent,
    RequestContext,
    calibration_item,
    decode_decisions,
    examination_item,
)
from streaming.stores import SERVING_LEASE_S, Store

log = structlog.get_logger(__name__)

# Long enough to resume a run stopped overnight or over a weekend; the credits of requests
# whose window has closed are never read again by the live consumers, only by a resume.
REBUILD_CREDIT_TTL_S = 3 * 86400.0
# A version born this long before its first surviving decision lost its start to retention.
PARTIAL_SLACK_S = 60.0
# The largest relative difference ``verify`` accepts between a rebuilt and a live namespace.
VERIFY_TOLERANCE = 1e-9

EventKey = tuple[str, str, str, str]  # event_id, request_id, item_id, type


class RebuildRefused(ValueError):
    """The target already holds a version to rebuild (and ``resume`` was not asked for)."""


@dataclass
class RebuildReport:
    """What a rebuild read, applied and skipped, per category, and which versions it wrote."""

    versions: dict[str, str] = field(default_factory=dict)  # source version → target version
    decisions: int = 0
    feedback: int = 0
    # The consumer's own counts (credited_*, duplicate, redelivered, dead_item_not_served) and
    # the replay's: other_version, missing_decision, dead_in_live, late, malformed.
    counts: Counter[str] = field(default_factory=Counter)
    contexts_restored: int = 0
    partial: dict[str, str] = field(default_factory=dict)  # source version → why
    skipped_versions: list[str] = field(default_factory=list)  # in the log, not rebuilt
    # Target version → every item (pseudo-items included) an event reached, and the number of
    # coordinates those items can hold: what ``verify`` compares.
    items: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    n_coords: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "versions": self.versions,
            "decisions": self.decisions,
            "feedback": self.feedback,
            "counts": dict(sorted(self.counts.items())),
            "contexts_restored": self.contexts_restored,
            "partial": self.partial,
            "skipped_versions": self.skipped_versions,
            "items": sum(len(v) for v in self.items.values()),
        }


def retirement_horizon_s(window_s: float) -> float:
    """How long after its last request a version may still be served or get feedback: the
    horizon past which ``streaming.stores.retirable`` deletes it, so not worth rebuilding."""
    return window_s + RETIRE_SLACK_S + SERVING_LEASE_S


def rebuild(
    bus: Bus,
    store: Store,
    *,
    decisions_topic: str,
    feedback_topic: str,
    dead_letter_topic: str | None,
    window_s: float,
    versions: Collection[str] = (),
    suffix: str = "",
    resume: bool = False,
    restore_contexts: bool = False,
    births: dict[str, float] | None = None,
    batch: int = 5000,
    credit_ttl_s: float = REBUILD_CREDIT_TTL_S,
    clock: Callable[[], float] = time.time,
) -> RebuildReport:
    """Replay the topics into ``store``: each version ``V`` of ``versions`` as ``V + suffix``.

    ``versions`` empty means every version with a decision inside the retirement horizon
    (``retirement_horizon_s``). ``births`` (version → first write, from the live store's
    ``stats_versions``) lets the report tell a version whose start the topics no longer hold.
    Raises ``RebuildRefused`` before writing anything when a target version already exists in
    ``store`` and ``resume`` is False; ``BusUnavailable`` / ``StoreUnavailable`` as they come.
    """
    if restore_contexts and suffix:
        # Contexts are keyed by request id alone: renamed ones would replace the live ones.
        raise ValueError("restore_contexts: only when rebuilding under the same version names (no suffix)")
    now = clock()
    cut_ms = now * 1000
    report = RebuildReport()
    contexts, first_ts = _read_decisions(bus, decisions_topic, cut_ms, report)
    # An experiment arm's statistics are a namespace of their own (app/experiments.py): to a
    # rebuild, that namespace is a version like any other.
    contexts = {
        rid: dataclasses.replace(ctx, version=ctx.namespace, arm="") if ctx.arm else ctx
        for rid, ctx in contexts.items()
    }
    newest: dict[str, float] = {}
    oldest: dict[str, float] = {}
    for ctx in contexts.values():
        newest[ctx.version] = max(newest.get(ctx.version, -np.inf), ctx.ts)
        oldest[ctx.version] = min(oldest.get(ctx.version, np.inf), ctx.ts)
    if versions:
        chosen = set(versions)
    else:
        chosen = {v for v, ts in newest.items() if now - ts <= retirement_horizon_s(window_s)}
    report.skipped_versions = sorted(set(newest) - chosen)
    report.versions = {v: v + suffix for v in sorted(chosen)}
    existing = set(store.stats_versions())
    clash = sorted(t for t in report.versions.values() if t in existing)
    if clash and not resume:
        raise RebuildRefused(
            f"the target already holds version(s) {', '.join(clash)}: rebuild into an empty namespace "
            "(another --suffix) or an empty Redis, or pass --resume to continue an interrupted rebuild"
        )
    for v in sorted(chosen):
        if v not in newest:
            report.partial[v] = "no decision of this version is left in the topic"
        elif births and v in births and oldest[v] > births[v] + PARTIAL_SLACK_S:
            report.partial[v] = (
                f"its first surviving decision is {oldest[v] - births[v]:.0f} s after the version was born: "
                "the topics' retention is shorter than the version's age"
            )
        elif first_ts is not None and first_ts[1] and oldest[v] <= first_ts[0] + PARTIAL_SLACK_S:
            report.partial[v] = "the decisions topic was truncated by retention after this version's first request"
    used = {
        rid: dataclasses.replace(ctx, version=report.versions[ctx.version])
        for rid, ctx in contexts.items()
        if ctx.version in chosen
    }
    other = {rid for rid, ctx in contexts.items() if ctx.version not in chosen}
    del contexts
    if restore_contexts:
        for ctx in used.values():
            left = ctx.ts + window_s - now
            if left > 0:
                store.put_context(ctx, left)
                report.contexts_restored += 1
    dead = _dead_in_live(bus, dead_letter_topic, cut_ms) if dead_letter_topic else set()
    first_feedback: dict[int, tuple[int, int]] = {}  # partition → (first offset, its time ms)
    chunk: list[Record] = []
    for record in read_to_end(bus, feedback_topic, batch=batch, until_ms=cut_ms):
        first_feedback.setdefault(record.partition, (record.offset, record.timestamp_ms))
        chunk.append(record)
        if len(chunk) >= batch:
            _apply_chunk(store, chunk, used, other, dead, window_s, credit_ttl_s, report)
            chunk = []
    if chunk:
        _apply_chunk(store, chunk, used, other, dead, window_s, credit_ttl_s, report)
    for offset, ts_ms in first_feedback.values():
        if offset > 0:
            for v in sorted(chosen):
                if v in oldest and oldest[v] * 1000 < ts_ms and v not in report.partial:
                    report.partial[v] = "the feedback topic was truncated by retention after its first request"
    for v, why in report.partial.items():
        log.warning("rebuild_partial", version=v, reason=why)
    return report


def _read_decisions(
    bus: Bus, topic: str, cut_ms: float, report: RebuildReport
) -> tuple[dict[str, RequestContext], tuple[float, bool] | None]:
    """request id → context; and (the earliest surviving decision's time, whether any partition
    of the topic starts above offset 0), or None for an empty topic."""
    contexts: dict[str, RequestContext] = {}
    earliest = np.inf
    truncated = False
    seen: set[int] = set()
    for record in read_to_end(bus, topic, until_ms=cut_ms):
        if record.partition not in seen:
            seen.add(record.partition)
            truncated |= record.offset > 0
        try:
            found = decode_decisions(record.value)  # one decision per record, or several merged
        except (EventError, ValueError, KeyError, TypeError):
            report.counts["malformed_decision"] += 1
            continue
        for ctx in found:
            report.decisions += 1
            contexts[ctx.request_id] = ctx
            earliest = min(earliest, ctx.ts)
    return contexts, (None if not contexts else (float(earliest), truncated))


def _dead_in_live(bus: Bus, topic: str, cut_ms: float) -> set[EventKey]:
    """The events the live consumer dead-lettered because their request was unknown to it."""
    dead: set[EventKey] = set()
    for record in read_to_end(bus, topic, until_ms=cut_ms):
        try:
            letter = orjson.loads(record.value)
            if letter.get("reason") != "unknown_request":
                continue
            ev = FeedbackEvent.decode(str(letter["event"]).encode())
        except (orjson.JSONDecodeError, EventError, KeyError, TypeError, AttributeError):
            continue  # a malformed event was dead-lettered as such: it never joined anything
        dead.add(_key(ev))
    return dead


def _key(ev: FeedbackEvent) -> EventKey:
    return ev.event_id, ev.request_id, ev.item_id, ev.type


def _apply_chunk(
    store: Store,
    records: list[Record],
    contexts: dict[str, RequestContext],
    other: set[str],
    dead: set[EventKey],
    window_s: float,
    credit_ttl_s: float,
    report: RebuildReport,
) -> None:
    parsed: dict[int, list[tuple[int, FeedbackEvent]]] = defaultdict(list)
    for rec in records:
        report.feedback += 1
        try:
            ev = FeedbackEvent.decode(rec.value)
        except EventError:
            report.counts["malformed"] += 1
            continue
        ctx = contexts.get(ev.request_id)
        if ctx is None:
            report.counts["other_version" if ev.request_id in other else "missing_decision"] += 1
        elif _key(ev) in dead:
            report.counts["dead_in_live"] += 1
        elif rec.timestamp_ms / 1000 > ctx.ts + window_s:
            report.counts["late"] += 1
        else:
            parsed[rec.partition].append((rec.offset, ev))
            _note(report, ctx, ev.item_id)
    touched: dict[tuple[str, int], set[str]] = defaultdict(set)
    for events in parsed.values():
        events.sort(key=lambda pair: pair[0])
    works, _ = apply_partitions(store, dict(sorted(parsed.items())), contexts, credit_ttl_s, touched)
    for work in works.values():
        report.counts.update(work.counts)
    update_trending(store, touched)


def _note(report: RebuildReport, ctx: RequestContext, item: str) -> None:
    """Record the items and coordinates an event may write, for ``verify``."""
    items = report.items[ctx.version]
    items.add(item)
    limit = max(ctx.indices, default=-1) + 1
    if ctx.raw:
        items.add(calibration_item(ctx.surface))
        limit = max(limit, (max(ctx.groups.values(), default=0) + 1) * BINS)
    if ctx.randomized:
        items.add(examination_item(ctx.surface))
        limit = max(limit, len(ctx.items))
    report.n_coords = max(report.n_coords, limit)


def relative_difference(a: FloatArray, b: FloatArray) -> FloatArray:
    """Per row, ``max |a − b| / max(max |a|, max |b|)`` (0 for two zero rows).

    a, b : (N, M) statistics of the same N items over M coordinates. Returns (N,).

    >>> a = np.array([[1.0, 2.0], [0.0, 0.0], [4.0, -4.0]])
    >>> d = relative_difference(a, a + np.array([[0.0, 2e-12], [0.0, 0.0], [0.0, 4.0]]))
    >>> [float(f"{x:.3g}") for x in d]
    [1e-12, 0.0, 1.0]
    """
    scale = np.maximum(np.abs(a).max(axis=1, initial=0.0), np.abs(b).max(axis=1, initial=0.0))
    diff = np.abs(a - b).max(axis=1, initial=0.0)
    out: FloatArray = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return out


def verify(
    live: Store, rebuilt: Store, report: RebuildReport, chunk: int = 256
) -> tuple[float, list[tuple[str, str, float]]]:
    """Compare every item a rebuild reached, over every coordinate, with the live namespace.

    Returns the largest relative difference (``relative_difference`` over ``(w2, b)``) and the
    items above ``VERIFY_TOLERANCE`` as (version, item, difference), worst first, at most 20.
    """
    coords: IntArray = np.arange(max(report.n_coords, 1), dtype=np.int64)
    worst = 0.0
    bad: list[tuple[str, str, float]] = []
    for source, target in report.versions.items():
        items = sorted(report.items.get(target, ()))
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            w2_live, b_live = live.gather(source, part, coords)
            w2_new, b_new = rebuilt.gather(target, part, coords)
            diff = relative_difference(np.hstack([w2_live, b_live]), np.hstack([w2_new, b_new]))
            worst = max(worst, float(diff.max(initial=0.0)))
            bad += [(source, i, float(d)) for i, d in zip(part, diff.tolist(), strict=True) if d > VERIFY_TOLERANCE]
    bad.sort(key=lambda x: -x[2])
    return worst, bad[:20]
