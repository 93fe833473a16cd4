"""Implicit-feedback matrix factorisation (Hu, Koren & Volinsky, ICDM 2008) — offline only, numpy.

Why a factorisation beside the two-tower: a click on a recommendation is a choice made before
consuming the item, so what predicts it is what a user *chooses to engage with*: her own
history, what users like her engage with, and how popular it is. The two-tower's in-batch
softmax over L2-normalised embeddings cannot put popularity into a vector's norm, and on
MovieLens its top ten drew fewer clicks than a popularity list in ``make bench-loop``. A
factorisation of the whole interaction matrix (every cell, observed or not) reconstructs it,
popularity and history included, which is what "top-N" needs (Cremonesi, Koren & Turrin,
RecSys 2010, "Performance of recommender algorithms on top-N recommendation tasks": PureSVD, the
``alpha = 0`` case here, beat the rating-error-optimised models on top-N).

Objective, over every (user, item) cell::

    min  Σ_ui c_ui (p_ui − x_u·y_i)²  +  λ (Σ_u |x_u|² + Σ_i |y_i|²)

with ``p_ui`` the interaction's preference (0 where none), ``c_ui = 1 + alpha`` where observed
and 1 elsewhere. Alternating least squares solves each side exactly given the other::

    x_u = (YᵀY + alpha Σ_{i∈u} y_i y_iᵀ + λI)⁻¹ (1 + alpha) Σ_{i∈u} p_ui y_i

``YᵀY`` is shared by every user, so one sweep costs O(E·d² + (U + I)·d³), never O(U·I).

With an item offset ``o`` (``factorise(..., item_offset=o)``) the model is ``p_ui ≈ x_u·y_i + o_i``
in every cell: the factors fit what ``o`` (recent popularity, ``offline/job.py``) leaves over, and
the score served is ``x_u·y_i + o_i``. The solves stay exact: the residual ``p_ui − o_i`` of the
unobserved cells is ``−o_i``, whose sum over items (``Yᵀo``) or users (``o_i Σ_u x_u``) is one
dense term per side (``solve_side``'s ``shift``), so a sweep still costs O(E·d² + (U + I)·d³).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.checks import FloatArray, IntArray

# Observations per batched solve: (chunk, d, d) outer products stay within ~80 MB at d = 32.
_CHUNK = 10_000


@dataclass(frozen=True)
class FactorisationConfig:
    dim: int = 32
    alpha: float = 0.0  # extra confidence of an observed cell; 0 is a regularised PureSVD
    lam: float = 1.0
    iterations: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.iterations < 1:
            raise ValueError("dim/iterations: must be >= 1")
        if self.alpha < 0 or self.lam <= 0:
            raise ValueError(f"alpha/lam: must be >= 0 and > 0, got {self.alpha}, {self.lam}")


def solve_side(
    rows: IntArray,
    cols: IntArray,
    p: FloatArray,
    n_rows: int,
    other: FloatArray,
    alpha: float,
    lam: float,
    shift: FloatArray | None = None,
) -> FloatArray:
    """One ALS half-step: every row's factor (n_rows, d) given the other side's ``other`` (n, d).

    ``rows``, ``cols``, ``p`` (E,): the observed cells and their preferences. A row without
    observations gets zeros (the ridge solution of an all-zero row). ``shift`` (n_rows, d), if
    given, is subtracted from every row's right-hand side (an item offset's dense term).

    >>> y = np.eye(2)
    >>> solve_side(np.array([0, 0]), np.array([0, 1]), np.array([1.0, 0.5]), 2, y, 0.0, 1.0).tolist()
    [[0.5, 0.25], [0.0, 0.0]]
    """
    d = other.shape[1]
    gram = other.T @ other + lam * np.eye(d)
    if alpha == 0.0:  # one shared matrix: X = (P Y) (YᵀY + λI)⁻¹
        rhs = np.zeros((n_rows, d))
        np.add.at(rhs, rows, p[:, None] * other[cols])
        if shift is not None:
            rhs -= shift
        return np.asarray(np.linalg.solve(gram, rhs.T).T, dtype=np.float64)
    out = np.zeros((n_rows, d)) if shift is None else np.asarray(np.linalg.solve(gram, -shift.T).T, dtype=np.float64)
    order = np.argsort(rows, kind="stable")
    rows, cols, p = rows[order], cols[order], p[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    bounds = np.r_[starts, len(rows)]
    lo = 0
    while lo < len(starts):
        hi = lo + 1  # whole rows per chunk, at least one
        while hi < len(starts) and bounds[hi + 1] - bounds[lo] <= _CHUNK:
            hi += 1
        a, b = bounds[lo], bounds[hi]
        v = other[cols[a:b]]
        outer = np.einsum("ei,ej->eij", v, v) * alpha
        seg = starts[lo:hi] - a
        A = gram[None] + np.add.reduceat(outer, seg, axis=0)
        rhs = np.add.reduceat(((1.0 + alpha) * p[a:b])[:, None] * v, seg, axis=0)
        if shift is not None:
            rhs -= shift[rows[starts[lo:hi]]]
        out[rows[starts[lo:hi]]] = np.linalg.solve(A, rhs[..., None])[..., 0]
        lo = hi
    return out


def factorise(
    users: IntArray,
    items: IntArray,
    p: FloatArray,
    n_users: int,
    n_items: int,
    config: FactorisationConfig,
    item_offset: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """User factors (n_users, d) and item factors (n_items, d) for observed cells ``users``,
    ``items`` (E,) with preferences ``p`` (E,); repeated cells add up. With ``item_offset``
    (n_items,) the factors fit ``p − o`` over every cell (the module docstring).

    >>> users, items = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    >>> x, y = factorise(users, items, np.ones(4), 3, 4, FactorisationConfig(dim=3, lam=0.01))
    >>> (x @ y.T).round(1)[:, :3].tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    True
    """
    rng = np.random.default_rng(config.seed)
    y = rng.normal(0.0, 0.1, (n_items, config.dim))
    x = np.zeros((n_users, config.dim))
    if item_offset is None or not np.any(item_offset):
        for _ in range(config.iterations):
            x = solve_side(users, items, p, n_users, y, config.alpha, config.lam)
            y = solve_side(items, users, p, n_items, x, config.alpha, config.lam)
        return x, y
    o = np.asarray(item_offset, dtype=np.float64)
    # An observed cell's target is p − o at confidence 1 + alpha; solve_side multiplies its
    # preference by 1 + alpha and the dense shift carries the −o of every cell at confidence 1,
    # so the observed preference it sees is p − o·alpha / (1 + alpha).
    q = p - o[items] * (config.alpha / (1.0 + config.alpha))
    for _ in range(config.iterations):
        x = solve_side(
            users, items, q, n_users, y, config.alpha, config.lam, np.broadcast_to(y.T @ o, (n_users, config.dim))
        )
        y = solve_side(items, users, q, n_items, x, config.alpha, config.lam, np.outer(o, x.sum(axis=0)))
    return x, y


def fold_in(p_row: FloatArray, y: FloatArray, lam: float, item_offset: FloatArray | None = None) -> FloatArray:
    """The factor (d,) of a user with preferences ``p_row`` (n_items,) over every item, given the
    item factors ``y`` (n_items, d): the ridge step of ``alpha = 0`` (of ``p_row − item_offset``
    with an offset). Folding in the mean row gives the average user, whose scores rank items
    nearly by popularity.

    >>> fold_in(np.array([1.0, 0.0]), np.eye(2), 1.0).tolist()
    [0.5, 0.0]
    """
    d = y.shape[1]
    target = p_row if item_offset is None else p_row - item_offset
    return np.asarray(np.linalg.solve(y.T @ y + lam * np.eye(d), y.T @ target), dtype=np.float64)


def content_embed(bag: list[int], tokens: FloatArray, intercept: FloatArray) -> FloatArray:
    """``intercept + mean(tokens[bag])`` (d,): a factor from a feature bag (``content_map``'s
    model); the intercept alone for an empty bag.

    >>> content_embed([0, 1], np.array([[1.0], [3.0]]), np.array([0.5])).tolist()
    [2.5]
    """
    if not bag:
        return np.asarray(intercept, dtype=np.float64)
    return np.asarray(intercept + tokens[bag].mean(axis=0), dtype=np.float64)


def content_map(
    bags: list[list[int]], n_tokens: int, targets: FloatArray, rows: IntArray, lam: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """Token vectors (n_tokens, d) and an intercept (d,) such that an item's factor is about
    ``intercept + mean(token vectors of its bag)``: ridge regression of ``targets`` (R, d), the
    factors of items ``rows`` (R,), on their feature bags. Items without interactions (fresh
    ones, or ones announced later) are embedded from their features this way, as
    ``offline.bundle.item_from_features`` does at serving time.

    >>> bags = [[0], [1], [0]]
    >>> w, b = content_map(bags, 2, np.array([[1.0], [-1.0]]), np.array([0, 1]), lam=1e-6)
    >>> (b + w[bags[2]].mean(axis=0)).round(3).tolist()
    [1.0]
    """
    d = targets.shape[1]
    intercept = targets.mean(axis=0) if len(targets) else np.zeros(d)
    if n_tokens == 0 or not len(rows):
        return np.zeros((n_tokens, d)), intercept
    # Normal equations accumulated per item: FᵀF is (n_tokens, n_tokens), never (items, tokens).
    ftf = np.zeros((n_tokens, n_tokens))
    fty = np.zeros((n_tokens, d))
    centred = targets - intercept
    for r, item in enumerate(rows.tolist()):
        bag = np.asarray(bags[item], dtype=np.int64)
        if len(bag):
            np.add.at(ftf, np.ix_(bag, bag), 1.0 / len(bag) ** 2)
            np.add.at(fty, bag, centred[r] / len(bag))
    w = np.linalg.solve(ftf + lam * np.eye(n_tokens), fty)
    return np.asarray(w, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
