"""Examination: how likely a user is to look at each slot of a slate.

Positions count from 0; the curve is 1 at the top slot. Expected clicks of an item at position
``k`` are its top-slot click probability times ``exam[k]`` (the position-based model of
Joachims et al. 2017 and Wang et al. 2018), so updates, the bonus and the calibration all work
on the top-slot scale (``bandits/pooled.py``, ``bandits/calibration.py``).
"""

from __future__ import annotations

import numpy as np

from bandits.checks import FloatArray


def examination_prior(k: int) -> FloatArray:
    """The usual starting curve (k,), ``1 / log2(position + 2)``, the DCG discount.

    >>> examination_prior(3).round(3).tolist()
    [1.0, 0.631, 0.5]
    """
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    return np.asarray(1.0 / np.log2(np.arange(k) + 2.0), dtype=np.float64)


def examination_curve(
    impressions: FloatArray, clicks: FloatArray, prior_curve: FloatArray, smoothing: float = 200.0
) -> FloatArray:
    """The examination curve (K,) estimated from randomised slates, 1 at the top slot.

    On a randomised request the top K items are shown in a uniformly random order, so every
    position sees the same mix of items and its click rate differs from the top slot's only by
    examination: ``e_k = CTR_k / CTR_0`` (the RandTop intervention of Joachims et al. 2017,
    with logged, uniform propensities). Each position's rate is shrunk towards
    ``prior_curve[k] · CTR_0`` with ``smoothing`` pseudo-impressions, and the curve is made
    non-increasing (pool-adjacent-violators), as examination is.

    Parameters
    ----------
    impressions, clicks : (K,) per position, over randomised requests only
    prior_curve : (K,) what sparse positions shrink to (the previous estimate, or the prior)

    >>> n = np.full(3, 10_000.0)
    >>> examination_curve(n, np.array([1000.0, 500.0, 250.0]), examination_prior(3)).round(2).tolist()
    [1.0, 0.5, 0.25]
    """
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    prior = np.asarray(prior_curve, dtype=np.float64)
    if not (n.shape == c.shape == prior.shape) or n.ndim != 1 or len(n) == 0:
        raise ValueError(
            f"impressions/clicks/prior_curve: need equal (K,) shapes, got {n.shape}, {c.shape}, {prior.shape}"
        )
    top = (c[0] + 1.0) / (n[0] + 1.0 / max(float(prior[0]), 1e-9))
    rate = (c + smoothing * prior * top) / (n + smoothing)
    curve = np.clip(rate / rate[0], 1e-3, 1.0)
    # Non-increasing: PAV on the reversed (non-decreasing) sequence.
    out: list[list[float]] = []  # [value, weight, count]
    for value, weight in zip(curve[::-1].tolist(), (n + smoothing)[::-1].tolist(), strict=True):
        out.append([value, weight, 1.0])
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            v, w, k = out.pop()
            out[-1] = [(out[-1][0] * out[-1][1] + v * w) / (out[-1][1] + w), out[-1][1] + w, out[-1][2] + k]
    flat = np.repeat([b[0] for b in out], [int(b[2]) for b in out])[::-1]
    flat[0] = 1.0
    return np.asarray(flat, dtype=np.float64)
