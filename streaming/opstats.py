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
``coin_<side>_req@<p>``              consumer   requests whose explore coin came up ``<side>``
                                                (``explore`` or ``greedy``) with probability
                                                ``<p>`` of exploring (``repr`` of the float),
                                                counted when their top slot's impression is
                                                credited
``coin_<side>_clk@<p>``              consumer   credited clicks on those requests (any slot)
``coin_<side>_clk2@<p>``             consumer   what those clicks added to Σ c², c = a
                                                request's credited clicks (below)
``imp_fresh``, ``clk_fresh``         consumer   credited impressions and clicks of items
                                                younger than a day when served
===================================  =========  =============================================

**Experiment arms** (``app/experiments.py``) are counted twice: under their surface, and under
the counter surface ``<surface>@<experiment id>/<arm>`` (``RequestContext.counter_surfaces``),
with the same fields. An arm's counters are also added into a running-total bucket, minute
``TOTAL_MINUTE`` (0, the epoch's first minute, which no live minute can be): an experiment
outlives the two hours a minute bucket is kept; the total bucket is kept 30 days past its last
write (``streaming.stores.STATS_TOTAL_TTL_S``), so an idle arm keeps its record and an ended
experiment's final figures stay readable.

Counters are at-most-once: the consumer counts only newly credited events and writes the
counters after the statistics, so a redelivered batch is not counted twice (a crash in between
loses a few counts, which a dashboard can afford).

The explore coin (``bandits/whatif.py``): the what-if estimate of other ``explore_traffic``
values needs, per coin side, requests and clicks weighted by ``1/p`` (or ``1/(1 − p)``) and
their squares. Counters stay integers, and exact: instead of scaled or float increments the
fields carry ``p`` in their name, and the weights are computed when they are read
(``coin_sums_of``). ``p`` only changes when an operator edits the surface, so a minute holds a
field per coin side and value in use, a handful. Requests without a coin (``explore_p < 0``:
degraded) are not counted.

- **Requests** are counted by the consumer, which sees no decisions but sees every credited
  impression: a request counts once, when the impression of the item in its top slot
  (position 0) is credited. Credits are exactly-once per (request, item) and that item's events
  all reach one partition, so no other state is needed. The estimate is therefore per *shown*
  request (its top slot reported seen), over requests whose context the consumer could join.
  A click on a request whose top slot is never reported still counts: clients that report
  impressions for every item they show (the demo's users, or ``count_served_as_impressions``)
  keep numerator and denominator to the same requests; one that skips the top slot biases the
  estimate up, at every ``q`` alike.
- **Σ c²** is not a sum of per-click terms (a request's clicks land on different partitions).
  After applying a batch the consumer reads the click credits of every item of each request
  that gained clicks (one ``MGET``), so knows its clicks ``c`` now, ``m`` of them new, and adds
  ``c² − (c − m)²``. Exact as long as no two consumers credit clicks of one request at the same
  moment; when they do, both read the later total and Σ c² comes out larger (a wider interval,
  never a narrower one). When that read fails, ``c`` is taken as the request's slot count, an
  upper bound, again only widening the interval. (A crash between statistics and counters
  loses a few terms here as everywhere.) The interval then assumes what ``bandits/whatif.py``
  states: independent requests and the normal approximation.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from bandits.whatif import CoinSums, coin_sums
from streaming.events import RequestContext
from streaming.stores import TOTAL_MINUTE, Increment, Store, StoreUnavailable

# Roughly 1-2-3-5 steps, read with interpolation inside a bucket (``quantile``): the first
# freshness histogram's lowest edge was 100 ms, and its p99 drew a flat line on that edge; at
# 10 ms the demo's freshness (3-4 ms) still read as exactly 5.0 and 9.9 ms (make screenshot).
LATENCY_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000)
FRESHNESS_MS = (
    1, 2, 3, 5, 7, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip
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


ARM_MARK = "@"  # in a counter surface: an experiment arm's (streaming.events.arm_stats_key)


COIN_STATS = ("req", "clk", "clk2")


def coin_field(explore: bool, stat: str, p: float) -> str:
    """The counter of ``stat`` (``COIN_STATS``) for one coin side and probability ``p``.

    >>> coin_field(True, "req", 0.05), coin_field(False, "clk2", 0.1)
    ('coin_explore_req@0.05', 'coin_greedy_clk2@0.1')
    """
    return f"coin_{'explore' if explore else 'greedy'}_{stat}@{float(p)!r}"


def coin_credits(
    credited: Iterable[tuple[str, str, str]], contexts: Mapping[str, RequestContext]
) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """The coin counters of newly credited flags, one ``(item, request id, flags)`` per credited
    (request, item): (surface, field) → n for requests and clicks, and request id → clicks newly
    credited (for Σ c², ``clicks_sq_increment``). Requests without a coin are left out.

    >>> ctx = RequestContext("r1", "home", "v1", [0], [1.0], {"a": (0.1, False), "b": (0.1, True)}, 0.0,
    ...                      positions={"a": 0, "b": 1}, explore_coin=True, explore_p=0.25)
    >>> ops, clicks = coin_credits([("a", "r1", "i"), ("b", "r1", "ci")], {"r1": ctx})
    >>> sorted(ops.items()), dict(clicks)
    ([(('home', 'coin_explore_clk@0.25'), 1), (('home', 'coin_explore_req@0.25'), 1)], {'r1': 1})
    """
    ops: Counter[tuple[str, str]] = Counter()
    clicks: Counter[str] = Counter()
    for item, request_id, flags in credited:
        ctx = contexts.get(request_id)
        if ctx is None or ctx.explore_p < 0:
            continue
        for surface in ctx.counter_surfaces:
            if "i" in flags and ctx.positions.get(item) == 0:
                ops[(surface, coin_field(ctx.explore_coin, "req", ctx.explore_p))] += 1
            if "c" in flags:
                ops[(surface, coin_field(ctx.explore_coin, "clk", ctx.explore_p))] += 1
        if "c" in flags:
            clicks[request_id] += 1
    return ops, clicks


def clicks_sq_increment(total: int, new: int) -> int:
    """What ``new`` clicks, ending at ``total`` clicks on their request, add to Σ c²; a total
    read below ``new`` (credits expired in between) counts as ``new``.

    >>> clicks_sq_increment(1, 1), clicks_sq_increment(3, 1), clicks_sq_increment(3, 2)
    (1, 5, 8)
    """
    total = max(total, new)
    return total * total - (total - new) * (total - new)


def _coin_key(name: str) -> tuple[bool, float, int] | None:
    """(explore, p, index in ``COIN_STATS``) of a coin counter; None for any other field, and
    for a coin no toss can produce (explore at p = 0, greedy at p = 1), which only a stray
    write could: the dashboard reads on rather than fail."""
    head, at, p_text = name.partition("@")
    parts = head.split("_")
    if not at or len(parts) != 3 or parts[0] != "coin" or parts[1] not in ("explore", "greedy"):
        return None
    if parts[2] not in COIN_STATS:
        return None
    try:
        p = float(p_text)
    except ValueError:
        return None
    explore = parts[1] == "explore"
    if not 0.0 <= p <= 1.0 or (explore and p == 0.0) or (not explore and p == 1.0):
        return None
    return explore, p, COIN_STATS.index(parts[2])


def coin_totals(row: Mapping[str, int]) -> tuple[int, int, int]:
    """Shown requests, their clicks and Σ clicks² in a bucket, over both coin sides and every
    ``p``: an experiment arm's sums (``bandits/abtest.py``).

    >>> coin_totals({"coin_explore_req@0.25": 2, "coin_greedy_req@0.25": 5, "coin_greedy_clk@0.25": 3,
    ...              "coin_greedy_clk2@0.25": 5, "req": 9})
    (7, 3, 5)
    """
    sums = [0, 0, 0]
    for name, n in row.items():
        parsed = _coin_key(name)
        if parsed is not None:
            sums[parsed[2]] += n
    return sums[0], sums[1], sums[2]


def coin_sums_of(rows: Iterable[Mapping[str, int]], only_p: float | None = None) -> tuple[CoinSums, list[float]]:
    """The what-if sums (``bandits.whatif.CoinSums``) of minute buckets, of the requests served
    at ``p = only_p`` if given, and the values of ``p`` they hold (ascending)."""
    groups: dict[tuple[bool, float], list[int]] = {}
    for row in rows:
        for name, n in row.items():
            parsed = _coin_key(name)
            if parsed is not None and (only_p is None or parsed[1] == only_p):
                groups.setdefault(parsed[:2], [0, 0, 0])[parsed[2]] += n
    if not groups:
        return CoinSums.empty(), []
    keys = sorted(groups)
    cells = np.array([groups[k] for k in keys], dtype=np.float64).reshape(-1, 3)
    sums = coin_sums(
        np.array([x for x, _ in keys], dtype=bool),
        np.array([p for _, p in keys]),
        cells[:, 1],
        count=cells[:, 0],
        clicks_sq=cells[:, 2],
    )
    return sums, sorted({p for _, p in keys})


class Counters:
    """In-process accumulation, flushed to the store about once a second (no round trip per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, int, str]] = Counter()

    def add(self, surface: str, field: str, amount: int = 1, ts: float | None = None) -> None:
        if amount:
            with self._lock:
                self._pending[(surface, minute_of(time.time() if ts is None else ts), field)] += amount
                if ARM_MARK in surface:
                    self._pending[(surface, TOTAL_MINUTE, field)] += amount

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
