"""Online calibration: from the offline score to this surface's top-slot click probability.

Why. An offline prior is rarely a click probability on the traffic it serves. A student
trained on rated pairs predicts "liked, given watched" (about 0.5 on MovieLens), while a shown
item is clicked a few percent of the time. The residual learner compares every impression
with its prior, so a prior on the wrong scale turns each impression into a large negative
residual and every shown item sinks below every unshown one (the round-1 collapse).

The map. The raw prior's logit is cut into ``BINS`` fixed bins. Per bin the stream adds two
numbers: the **exposure** ``Σ e`` (the examination weight of the slot each impression was shown
in; 1 without a position model) and the **clicks** ``Σ r``. Both are plain sums, so a consumer
adds them exactly once through the same watermarks as the item statistics. The calibrated
top-slot probability of a bin is its click rate per unit of exposure, smoothed towards the
global rate times the bin's raw prior, made monotone by pool-adjacent-violators, and
interpolated between bin centres on the logit scale::

    g    = (Σ clicks + 1) / (Σ exposure · raw_i + 1)        global scale
    c_i  = (clicks_i + a · g · raw_i) / (exposure_i + a)     smoothed bin rate
    c    = PAV(c, weights = exposure + a)                     monotone in the raw prior

So expected clicks at position k are ``c · e_k``: calibration fits clicks against the prior
times the examination weight, on the same scale as the residual updates (``bandits/pooled.py``).
Before any traffic the map is the identity (``calibrated`` is False until ``min_exposure``).

Popularity groups. A student trained on rated pairs knows what a user likes among what she
watched, not how likely she is to look at it: on MovieLens a fixed popularity list out-clicks
the student's own ranking. So the map is learnt per **popularity group** of the item (its rank
in the bundle's recency-weighted popular list: top 10, top 50, top 200, the rest;
``popularity_groups``), each group's bins in their own coordinates ``group · BINS + bin`` of the
same pseudo-item. A sparse group shrinks to the map of all groups together, so a group with no
traffic of its own is calibrated as before. It is still monotone in the raw prior within each
group; between groups the traffic decides.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from bandits.checks import FloatArray, IntArray, as_float

BINS = 24
LOGIT_LOW, LOGIT_HIGH = -8.0, 4.0  # raw priors from 3e-4 to 0.98; outside, the end bins
SMOOTHING = 50.0  # pseudo-exposure per bin, at the global rate
MIN_EXPOSURE = 200.0  # total exposure before the map is trusted
# Rank edges in the bundle's popular list: groups 3 (top 10), 2 (top 50), 1 (top 200), 0 (rest,
# and any bundle without the list, or an item outside the bundle).
GROUP_EDGES = (10, 50, 200)
GROUPS = len(GROUP_EDGES) + 1


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def bin_of(raw: ArrayLike) -> IntArray:
    """The calibration bin (0 .. BINS − 1) of each raw prior (N,).

    >>> bin_of([1e-6, 0.5, 0.999]).tolist()
    [0, 16, 23]
    """
    x = _logit(as_float("raw", raw, 1))
    width = (LOGIT_HIGH - LOGIT_LOW) / BINS
    return np.clip(np.floor((x - LOGIT_LOW) / width), 0, BINS - 1).astype(np.int64)


def bin_index(raw: float) -> int:
    """``bin_of`` for one raw prior, without arrays (the consumer calls it per event).

    >>> [bin_index(x) for x in (1e-6, 0.5, 0.999)]
    [0, 16, 23]
    """
    q = min(max(raw, 1e-9), 1 - 1e-9)
    width = (LOGIT_HIGH - LOGIT_LOW) / BINS
    return min(max(math.floor((math.log(q / (1 - q)) - LOGIT_LOW) / width), 0), BINS - 1)


def bin_centres() -> FloatArray:
    """Raw prior at the centre of each bin (BINS,)."""
    width = (LOGIT_HIGH - LOGIT_LOW) / BINS
    x = LOGIT_LOW + width * (np.arange(BINS) + 0.5)
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _pav(y: FloatArray, w: FloatArray) -> FloatArray:
    """Weighted isotonic (non-decreasing) regression by pool-adjacent-violators."""
    values: list[float] = []
    weights: list[float] = []
    counts: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        values.append(yi)
        weights.append(wi)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            v2, w2, c2 = values.pop(), weights.pop(), counts.pop()
            total = weights[-1] + w2
            values[-1] = (values[-1] * weights[-1] + v2 * w2) / total
            weights[-1] = total
            counts[-1] += c2
    return np.repeat(np.array(values), counts)


def calibration_curve(
    exposure: ArrayLike, clicks: ArrayLike, smoothing: float = SMOOTHING, prior_curve: FloatArray | None = None
) -> FloatArray:
    """The calibrated top-slot click probability at each bin centre (BINS,).

    ``prior_curve`` (BINS,), when given, replaces ``g · raw`` as what sparse bins shrink to:
    the previous bundle's curve, so that a new bundle starts from the last calibration rather
    than from the identity.

    >>> exposure, clicks = np.zeros(BINS), np.zeros(BINS)
    >>> exposure[16], clicks[16] = 10_000.0, 300.0    # raw 0.5 is clicked 3% of the time
    >>> round(float(calibration_curve(exposure, clicks)[16]), 3)
    0.03
    """
    e = as_float("exposure", exposure, 1)
    c = as_float("clicks", clicks, 1)
    if e.shape != (BINS,) or c.shape != (BINS,):
        raise ValueError(f"exposure/clicks: expected shape ({BINS},), got {e.shape} and {c.shape}")
    raw = bin_centres()
    g = (c.sum() + 1.0) / (float(e @ raw) + 1.0)
    towards = g * raw if prior_curve is None else prior_curve
    rate = (c + smoothing * towards) / (e + smoothing)
    return np.clip(_pav(rate, e + smoothing), 1e-6, 1.0)


def calibrate(raw: ArrayLike, curve: FloatArray) -> FloatArray:
    """Calibrated probabilities (N,) for raw priors (N,): ``curve`` interpolated on the logit
    axis between bin centres, flat beyond the end centres."""
    x = _logit(as_float("raw", raw, 1))
    centres = _logit(bin_centres())
    return np.asarray(np.interp(x, centres, curve), dtype=np.float64)


def popularity_groups(popular: ArrayLike, n_items: int) -> IntArray:
    """Each item row's popularity group (n_items,) from the bundle's popular list (rows, best
    first): ``GROUPS − 1`` for the top ``GROUP_EDGES[0]``, down to 0 beyond the last edge.

    >>> popularity_groups(np.arange(60)[::-1], 70)[[59, 49, 0, 65]].tolist()
    [3, 2, 1, 0]
    """
    rows = np.asarray(popular, dtype=np.int64)
    groups = np.zeros(n_items, dtype=np.int64)
    for group, edge in zip(range(GROUPS - 1, 0, -1), GROUP_EDGES, strict=True):
        top = rows[:edge]
        top = top[(groups[top] == 0)]  # a higher group already took the better ranks
        groups[top] = group
    return groups


def grouped_curves(
    exposure: ArrayLike, clicks: ArrayLike, smoothing: float = SMOOTHING, prior_curve: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per popularity group, the calibrated curve (GROUPS, BINS), and the pooled one (BINS,).

    ``exposure``, ``clicks`` : (GROUPS · BINS,) the pseudo-item's row, group-major. The pooled
    curve is ``calibration_curve`` of the groups' sums (shrunk to ``prior_curve`` when given);
    each group's sparse bins shrink to it.

    >>> exposure, clicks = np.zeros(GROUPS * BINS), np.zeros(GROUPS * BINS)
    >>> exposure[16], clicks[16] = 10_000.0, 100.0                    # the rest: 1%
    >>> exposure[3 * BINS + 16], clicks[3 * BINS + 16] = 10_000.0, 900.0  # the top 10: 9%
    >>> curves, pooled = grouped_curves(exposure, clicks)
    >>> [round(float(x), 3) for x in (curves[0, 16], curves[3, 16], pooled[16], curves[1, 16])]
    [0.01, 0.089, 0.05, 0.05]
    """
    e = as_float("exposure", exposure, 1)
    c = as_float("clicks", clicks, 1)
    if e.shape != (GROUPS * BINS,) or c.shape != e.shape:
        raise ValueError(f"exposure/clicks: expected shape ({GROUPS * BINS},), got {e.shape} and {c.shape}")
    eg, cg = e.reshape(GROUPS, BINS), c.reshape(GROUPS, BINS)
    pooled = calibration_curve(eg.sum(axis=0), cg.sum(axis=0), smoothing, prior_curve)
    curves = np.stack([calibration_curve(eg[g], cg[g], smoothing, pooled) for g in range(GROUPS)])
    return curves, pooled


def calibrate_grouped(raw: ArrayLike, groups: ArrayLike, curves: FloatArray) -> FloatArray:
    """``calibrate`` with each prior (N,) through its group's curve (``curves`` (GROUPS, BINS)).

    >>> curves = np.stack([np.full(BINS, 0.01 * (g + 1)) for g in range(GROUPS)])
    >>> calibrate_grouped([0.5, 0.5], [0, 3], curves).tolist()
    [0.01, 0.04]
    """
    r = as_float("raw", raw, 1)
    g = np.asarray(groups, dtype=np.int64)
    if g.shape != r.shape:
        raise ValueError(f"groups: expected shape {r.shape}, got {g.shape}")
    out = np.empty(len(r))
    for group in np.unique(g).tolist():
        at = g == group
        out[at] = calibrate(r[at], curves[group])
    return out
