"""Operator counters: what the dashboard shows, time-bucketed by minute per surface.

Fields of a minute bucket (integers):

===================================  =========  =============================================
field                                writer     meaning
===================================  =========  =============================================
``req``, ``slots``, ``explored``     API        requests, served slots, slots not in greedy top-k
``degraded``                         API        responses served from priors only
``lat_le_<ms>``                      API        request latency histogram (service time)
``imp_explored``, ``imp_exploited``  consumer   credited impressions by the slot's explored flag
``clk_explored``, ``clk_exploited``  consumer   credited clicks likewise
``imp_age_<bucket>``                 consumer   impressions by item age at serving time
``fresh50``                          consumer   fresh items (< 1 day old) reaching 50 impressions
``fresh_le_<ms>``                    consumer   event time → applied to the store, histogram
``dead``                             consumer   dead-lettered events
===================================  =========  =============================================

Counters are at-most-once: the consumer counts only newly credited events and writes the
counters after the statistics, so a redelivered batch is not counted twice (a crash in between
loses a few counts, which a dashboard can afford).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Sequence

from streaming.stores import Increment, Store, StoreUnavailable

# Roughly 1-2-3-5 steps, read with interpolation inside a bucket (``quantile``): the first
# freshness histogram's lowest edge was 100 ms, and its p99 drew a flat line on that edge.
LATENCY_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000)
FRESHNESS_MS = (10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000)
AGE_BUCKETS = (("lt_1h", 3600.0), ("lt_1d", 86400.0), ("lt_7d", 7 * 86400.0), ("older", math.inf))
FRESH_AGE_S = 86400.0
FRESH_IMPRESSIONS = 50


def bucket(prefix: str, value_ms: float, bounds: Sequence[int]) -> str:
    for bound in bounds:
        if value_ms <= bound:
            return f"{prefix}_le_{bound}"
    return f"{prefix}_le_inf"


def age_bucket(age_s: float) -> str:
    return next(f"imp_age_{name}" for name, bound in AGE_BUCKETS if age_s < bound)


def quantile(counts: dict[str, int], prefix: str, bounds: Sequence[int], q: float) -> float | None:
    """Quantile ``q`` (ms) of a bucketed histogram, interpolated linearly inside the bucket that
    holds it (from 0 for the first); past the last bound, twice the last bound. None without data.

    >>> quantile({"x_le_10": 2, "x_le_20": 2}, "x", (10, 20), 0.75)
    15.0
    >>> quantile({"x_le_inf": 1}, "x", (10, 20), 0.5)
    40.0
    """
    edges = [*bounds, math.inf]
    series = [counts.get(f"{prefix}_le_{b if b != math.inf else 'inf'}", 0) for b in edges]
    total = sum(series)
    if total == 0:
        return None
    target = q * total
    running, low = 0, 0.0
    for edge, n in zip(edges, series, strict=True):
        if n and running + n >= target:
            if edge == math.inf:
                return float(bounds[-1]) * 2
            return low + (float(edge) - low) * (target - running) / n
        running += n
        low = float(edge)
    return None


def minute_of(ts: float) -> int:
    return int(ts // 60)


class Counters:
    """In-process accumulation, flushed to the store about once a second (no round trip per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, int, str]] = Counter()

    def add(self, surface: str, field: str, amount: int = 1, ts: float | None = None) -> None:
        if amount:
            with self._lock:
                self._pending[(surface, minute_of(time.time() if ts is None else ts), field)] += amount

    def flush(self, store: Store) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        increments: list[Increment] = [(s, m, f, n) for (s, m, f), n in pending.items()]
        try:
            store.incr_stats(increments)
        except StoreUnavailable:
            with self._lock:  # keep them for the next flush
                self._pending.update(pending)
