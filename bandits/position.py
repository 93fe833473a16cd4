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


# The family's grid (``examination_fit``): b from nearly linear decay to a sharp first drop,
# a from flat to steep. 1/log2(k + 2) is within 0.006 of (1 + 2k)^-0.43 over ten slots, and a
# power law (1 + k)^-a is in the family exactly.
FAMILY_B = np.geomspace(0.02, 50.0, 60)
FAMILY_A = np.linspace(0.0, 3.0, 121)
Z95_ONE_SIDED = 1.6448536269514722


def chi2_95(df: int) -> float:
    """The chi-square distribution's 95% quantile (Wilson & Hilferty 1931, within 3% from df 1).

    >>> round(chi2_95(8), 2)  # 15.51 exactly
    15.49
    """
    h = 2.0 / (9.0 * df)
    return float(df * (1.0 - h + Z95_ONE_SIDED * np.sqrt(h)) ** 3)


def examination_fit(impressions: FloatArray, clicks: FloatArray) -> tuple[FloatArray, float, float]:
    """The maximum-likelihood curve (K,) of the family ``e_k = (1 + b·k)^(−a)``, with the top
    slot's click rate ``r`` and the Poisson deviance of the fit.

    Clicks at position k are taken as Poisson with mean ``n_k · r · e_k``; ``r`` is profiled
    out (``Σc / Σ n·e``) and (a, b) found on a grid. Pooling every position into two shape
    parameters is what makes the estimate usable at a few hundred randomised slates, where a
    per-position ratio to the top slot carries the top slot's noise into every position.

    >>> n = np.full(5, 100_000.0)
    >>> curve, r, deviance = examination_fit(n, n * 0.2 * (1 + np.arange(5.0)) ** -0.7)
    >>> np.abs(curve - (1 + np.arange(5.0)) ** -0.7).max() < 0.01, round(r, 3)
    (np.True_, 0.2)
    """
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    k = np.arange(len(n), dtype=np.float64)
    family = (1.0 + FAMILY_B[:, None, None] * k) ** (-FAMILY_A[None, :, None])  # (B, A, K)
    exposure = (family * n).sum(-1)
    r = c.sum() / np.maximum(exposure, 1e-12)
    ll = (c * np.log(np.maximum(r[..., None] * family, 1e-300))).sum(-1) - r * exposure
    i, j = np.unravel_index(int(np.argmax(ll)), ll.shape)
    mu = n * r[i, j] * family[i, j]
    deviance = 2.0 * float(
        np.sum(np.where(c > 0, c * np.log(np.maximum(c, 1e-300) / np.maximum(mu, 1e-300)), 0.0) - (c - mu))
    )
    return np.asarray(family[i, j], dtype=np.float64), float(r[i, j]), deviance


def examination_curve(
    impressions: FloatArray, clicks: FloatArray, prior_curve: FloatArray, smoothing: float = 50.0
) -> FloatArray:
    """The examination curve (K,) estimated from randomised slates, 1 at the top slot.

    On a randomised request the top K items are shown in a uniformly random order, so every
    position sees the same mix of items and its click rate differs from the top slot's only by
    examination (the RandTop intervention of Joachims et al. 2017, with logged, uniform
    propensities). ``smoothing`` pseudo-impressions per position at ``prior_curve`` (the
    previous estimate, or the prior) join the data, then:

    - the smooth family ``(1 + b·k)^(−a)`` is fitted to all positions at once
      (``examination_fit``), and is the estimate unless its deviance rejects it at 5%
      (chi-square, K − 2 degrees of freedom);
    - where it is rejected (a fold in the page, say, that no smooth curve follows), each
      position's rate over the top slot's, made non-increasing (pool-adjacent-violators).

    Measured on simulated randomised slates (10 slots, 500 slates, top-slot click rate 0.2,
    200 seeds): median largest error 0.057 against the per-position ratio's 0.074 for a
    1/log2(k + 2) curve, 0.051 against 0.078 for (1 + k)^-0.7, 0.040 against 0.101 for
    (1 + k)^-1.2; for a step at the fourth slot 0.18 against 0.12 at 500 slates (the test
    cannot yet tell it from a smooth curve), the same 0.065 at 2,000.

    Parameters
    ----------
    impressions, clicks : (K,) per position, over randomised requests only
    prior_curve : (K,) the pseudo-impressions' curve (the previous estimate, or the prior)

    >>> n = np.full(4, 10_000.0)  # a fold after the second slot: no smooth curve follows it
    >>> examination_curve(n, np.array([1000.0, 900.0, 300.0, 280.0]), examination_prior(4)).round(2).tolist()
    [1.0, 0.9, 0.3, 0.28]
    >>> n = np.full(6, 20_000.0)  # (1 + k)^-0.7: 1, .62, .46, .38, .33, .29
    >>> examination_curve(n, n * 0.2 * (1 + np.arange(6.0)) ** -0.7, examination_prior(6)).round(2).tolist()
    [1.0, 0.62, 0.47, 0.38, 0.32, 0.28]
    """
    n = np.asarray(impressions, dtype=np.float64)
    c = np.asarray(clicks, dtype=np.float64)
    prior = np.asarray(prior_curve, dtype=np.float64)
    if not (n.shape == c.shape == prior.shape) or n.ndim != 1 or len(n) == 0:
        raise ValueError(
            f"impressions/clicks/prior_curve: need equal (K,) shapes, got {n.shape}, {c.shape}, {prior.shape}"
        )
    if not n.any():
        # Nothing randomised yet: the prior as it is (a fit to pseudo-data alone would only
        # approximate it).
        return np.asarray(np.minimum.accumulate(np.r_[1.0, np.clip(prior[1:], 1e-3, 1.0)]), dtype=np.float64)
    top = (c[0] + 1.0) / (n[0] + 1.0 / max(float(prior[0]), 1e-9))
    n_all = n + smoothing
    c_all = c + smoothing * prior * top
    if len(n) >= 3:
        fit, _, deviance = examination_fit(n_all, c_all)
        if deviance <= chi2_95(len(n) - 2):
            curve = np.clip(fit, 1e-3, 1.0)
            curve[0] = 1.0
            return np.asarray(np.minimum.accumulate(curve), dtype=np.float64)
    rate = c_all / n_all
    curve = np.clip(rate / rate[0], 1e-3, 1.0)
    # Non-increasing: PAV on the reversed (non-decreasing) sequence.
    out: list[list[float]] = []  # [value, weight, count]
    for value, weight in zip(curve[::-1].tolist(), n_all[::-1].tolist(), strict=True):
        out.append([value, weight, 1.0])
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            v, w, k = out.pop()
            out[-1] = [(out[-1][0] * out[-1][1] + v * w) / (out[-1][1] + w), out[-1][1] + w, out[-1][2] + k]
    flat = np.repeat([b[0] for b in out], [int(b[2]) for b in out])[::-1]
    flat[0] = 1.0
    return np.asarray(flat, dtype=np.float64)
