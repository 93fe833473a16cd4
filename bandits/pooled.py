"""The pooled residual: an item-level residual shared by every context, and per-cluster
residuals that shrink towards it (a two-level hierarchical model, read from plain Diag sums).

Why. Plain Diag keeps the residual per (item, cluster): what one cluster learns about an item
never reaches the others, so learning that an item is good or bad for everyone takes ``C``
times the impressions (``bandits/README.md``: the reason Vowpal Wabbit won ``bench-bandits``).

The model. For item ``j`` with offline prior ``p`` (on the top-slot click scale), a context
with weights ``w`` (K,) over clusters, and examination weight ``e`` of the slot it was shown
in (1 without position bias)::

    E[r] = e · (p + Σ_f w_f · θ_f)        θ_f ~ N(θ_0, 1/λ_c)        θ_0 ~ N(0, 1/λ_j)

``λ_j`` is ``λ``, or per item (``DiagStats.lam0``) how much the offline evidence behind its
prior is worth: serving gives items known by their features only a smaller one.

Statistics. The item-level residual is just one more Diag coordinate, the **pool
coordinate**, which every update carries with weight 1. So the store keeps only its usual two
additive sums per (item, coordinate), updated as ever: ``w2 += (w·e)²``, ``b += w·e·(r − e·p)``.
Updates commute, the consumer stays exactly-once, Redis keeps plain sums. All the hierarchy
is in how they are read:

    θ_0 = b_0 / (λ + n_0)                              the item's residual, all contexts pooled
    θ_f = (b_f + λ_c · θ_0) / (λ_c + w2_f)             each cluster's, shrunk towards θ_0
    mean  = p + Σ_f w_f · θ_f
    var   = Σ_f w_f² / (λ_c + w2_f) + (Σ_f w_f · s_f)² / (λ + n_0),   s_f = λ_c / (λ_c + w2_f)
    bonus = α · sqrt(var)

Why nothing is counted twice. ``θ_0`` never enters the mean beside the cluster terms; it is
only the prior mean each ``θ_f`` shrinks to. With softmax weights (Σ w = 1), a cluster with no
data of its own contributes exactly ``θ_0``, a cluster with much data its own estimate. (Adding
``θ_0`` to plain Diag's per-cluster terms instead would count the same residual twice: each
estimates the whole of it.) The one reuse left is empirical Bayes: cluster ``f``'s own
impressions are part of ``θ_0`` as well, which shrinks ``θ_f`` slightly towards its own data;
the share is that cluster's share of the item's traffic, times ``s_f``, which vanishes as the
cluster gathers data. The ``θ_0`` variance term is shared by every cluster, hence squared
after the sum.

The pool coordinate is, by convention, the **last** coordinate of the statistics a policy
reads: ``DiagStats`` of shape (n_items, C + 1) for C clusters, or the last gathered column.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bandits.checks import FloatArray, as_float, non_negative, positive


def pooled_scores(
    prior: ArrayLike,
    weights: ArrayLike,
    w2: ArrayLike,
    b: ArrayLike,
    n0: ArrayLike,
    b0: ArrayLike,
    lam: float,
    lam_pool: float,
    alpha: float,
) -> tuple[FloatArray, FloatArray]:
    """Mean and bonus of ``N`` candidates under the pooled residual.

    Parameters
    ----------
    prior : (N,) prior ``p`` on the top-slot click scale
    weights : (K,) context weights ``w`` over the clusters (the pool coordinate excluded)
    w2, b : (N, K) the clusters' sums ``Σ (w·e)²`` and ``Σ w·e·(r − e·p)``
    n0, b0 : (N,) the pool coordinate's sums (weight 1 in every update)
    lam : ridge ``λ`` of the item-level residual ``θ_0`` (> 0)
    lam_pool : ``λ_c``, how strongly a cluster's residual is held to ``θ_0`` (> 0)
    alpha : UCB width (>= 0)

    Returns
    -------
    mean : (N,) ``p + Σ_f w_f θ_f``
    bonus : (N,) ``α · sqrt(var)``

    Item 1 was bad for one cluster's users; item 2 is unseen. The bad news reaches the other
    cluster through ``θ_0``, and the unseen item keeps the larger bonus:

    >>> mean, bonus = pooled_scores(
    ...     [0.1, 0.1], [0.0, 1.0], [[20.0, 0.0], [0.0, 0.0]], [[-2.0, 0.0], [0.0, 0.0]],
    ...     [20.0, 0.0], [-2.0, 0.0], lam=1.0, lam_pool=4.0, alpha=1.0)
    >>> [round(x, 3) for x in mean.tolist()], bool(bonus[1] > bonus[0])
    ([0.005, 0.1], True)
    """
    p = as_float("prior", prior, 1)
    w = as_float("weights", weights, 1)
    w2_arr, b_arr = as_float("w2", w2, 2), as_float("b", b, 2)
    n0_arr, b0_arr = as_float("n0", n0, 1), as_float("b0", b0, 1)
    if w2_arr.shape != (len(p), len(w)) or b_arr.shape != w2_arr.shape:
        raise ValueError(f"w2/b: expected shape {(len(p), len(w))}, got {w2_arr.shape} and {b_arr.shape}")
    if n0_arr.shape != p.shape or b0_arr.shape != p.shape:
        raise ValueError(f"n0/b0: expected shape {p.shape}, got {n0_arr.shape} and {b0_arr.shape}")
    return _pooled_scores(p, w, w2_arr, b_arr, n0_arr, b0_arr, positive("lam", lam),
                          positive("lam_pool", lam_pool), non_negative("alpha", alpha))  # fmt: skip


def _pooled_scores(
    p: FloatArray,
    w: FloatArray,
    w2: FloatArray,
    b: FloatArray,
    n0: FloatArray,
    b0: FloatArray,
    lam: float | FloatArray,
    lam_pool: float,
    alpha: float,
) -> tuple[FloatArray, FloatArray]:
    theta0, var0 = pooled_item(n0, b0, lam)
    theta, denom = _clusters(w2, b, theta0, lam_pool)
    mean = p + theta @ w
    shrink = lam_pool / denom
    var = (1.0 / denom) @ (w * w) + (shrink @ w) ** 2 * var0
    return mean, alpha * np.sqrt(var)


def _clusters(w2: FloatArray, b: FloatArray, theta0: FloatArray, lam_pool: float) -> tuple[FloatArray, FloatArray]:
    """Each cluster's residual (N, K) shrunk towards ``theta0`` (N,), and its denominator."""
    denom = lam_pool + w2
    return (b + lam_pool * theta0[:, None]) / denom, denom


def pooled_item(n0: FloatArray, b0: FloatArray, lam: float | FloatArray) -> tuple[FloatArray, FloatArray]:
    """The item-level residual ``θ_0`` (N,) and its variance (N,) from the pool coordinate;
    ``lam`` is one ridge for all, or each item's (N,) (``DiagStats.lam0``)."""
    d0 = lam + n0
    return b0 / d0, 1.0 / d0


# How many impressions' worth of "no better than its prior" a trending score starts from. The
# serving score trusts ``θ_0`` at ``λ`` (one lucky click moves it a lot, which is right for
# the one item being scored); a list that every request reads needs more evidence than that,
# or each lucky click would put an item in front of everyone.
TRENDING_LAM = 8.0


def trending_scores(n0: ArrayLike, b0: ArrayLike, lam: float = TRENDING_LAM) -> FloatArray:
    """How much better than its prior an item does across every context (N,): the pool
    coordinate's residual ``b_0 / (λ_t + n_0)`` under a stronger ridge ``λ_t``.

    Items that turn into hits (a prior far below what users now do) rise to the top; an item
    whose prior already predicts its clicks stays near 0, whatever its click rate. Serving adds
    the top of this list to every request's candidates, so a hit found in one cluster reaches
    all of them (``app/trending.py``).

    >>> [round(x, 3) for x in trending_scores([20.0, 1.0, 0.0], [6.0, 1.0, 0.0]).tolist()]
    [0.214, 0.111, 0.0]
    """
    n0_arr, b0_arr = as_float("n0", n0, 1), as_float("b0", b0, 1)
    if n0_arr.shape != b0_arr.shape:
        raise ValueError(f"n0/b0: shapes differ, {n0_arr.shape} and {b0_arr.shape}")
    return np.asarray(b0_arr / (positive("lam", lam) + n0_arr), dtype=np.float64)


def pooled_sample(
    p: FloatArray,
    w: FloatArray,
    w2: FloatArray,
    b: FloatArray,
    n0: FloatArray,
    b0: FloatArray,
    lam: float | FloatArray,
    lam_pool: float,
    sigma: float,
    rng: np.random.Generator,
) -> FloatArray:
    """One Thompson draw of ``p + Σ_f w_f θ_f`` (N,): ``θ_0`` first, then each ``θ_f`` given it."""
    theta0, var0 = pooled_item(n0, b0, lam)
    draw0 = theta0 + sigma * np.sqrt(var0) * rng.standard_normal(len(p))
    theta, denom = _clusters(w2, b, draw0, lam_pool)
    theta = theta + sigma / np.sqrt(denom) * rng.standard_normal(w2.shape)
    return np.asarray(p + theta @ w, dtype=np.float64)
