"""Diag-LinUCB on a sparse context, in the residual form of DESIGN.md.

For item ``j`` and context coordinate ``f`` the statistics are two additive sums::

    w2[j, f] = Σ w[f]²            over impressions of j
    b[j, f]  = Σ w[f] · (r − p)   over impressions of j

and ``d = λ + w2``. Storage keeps ``w2`` rather than ``d`` so that a missing entry reads as 0
(``d = λ``) and every update, in memory or in Redis, is a plain addition: updates commute.

Forgetting (optional) keeps the additions commutative too: each delta is multiplied by
``2 ** ((t − epoch) / half_life)`` when it is made, and a read at time ``now`` divides by the
same factor at ``now``. The stored sums are "epoch-scaled"; no per-entry timestamp is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from bandits.checks import FloatArray, IntArray, as_float, as_index, non_negative, positive, same_length


@dataclass(frozen=True)
class SparseContext:
    """A user's sparse context: ``K`` active coordinates and their weights.

    Attributes
    ----------
    indices : (K,) int64, coordinate ids (cluster ids, hashed features), each >= 0
    weights : (K,) float64, finite weights (softmax memberships sum to 1)
    """

    indices: IntArray
    weights: FloatArray

    @classmethod
    def of(cls, indices: ArrayLike, weights: ArrayLike) -> SparseContext:
        """Validate and build a context.

        >>> SparseContext.of([3, 7], [0.75, 0.25]).weights.tolist()
        [0.75, 0.25]
        """
        idx = as_index("context.indices", indices, 1)
        w = as_float("context.weights", weights, 1)
        same_length(**{"context.indices": idx, "context.weights": w})
        if len(np.unique(idx)) != len(idx):
            raise ValueError("context.indices: duplicate coordinate")
        return cls(idx, w)


@dataclass(frozen=True)
class Decay:
    """Exponential forgetting with a half-life, applied lazily through epoch-scaled sums.

    ``half_life=None`` means no forgetting (every scale is 1). ``epoch`` should be close to the
    times in use: sums grow as ``2 ** ((t − epoch) / half_life)``, which stays well inside
    float64 for ~1000 half-lives; rebase (start a new statistics namespace) long before that.

    >>> Decay(half_life=10.0, epoch=0.0).scale(np.array([0.0, 10.0, 20.0])).tolist()
    [1.0, 2.0, 4.0]
    """

    half_life: float | None = None
    epoch: float = 0.0

    def __post_init__(self) -> None:
        if self.half_life is not None:
            positive("half_life", self.half_life)

    def scale(self, t: FloatArray | float) -> FloatArray:
        """Factor that brings a delta made at time ``t`` into epoch-scaled units."""
        t_arr = np.asarray(t, dtype=np.float64)
        if self.half_life is None:
            return np.ones_like(t_arr)
        return np.asarray(np.exp2((t_arr - self.epoch) / self.half_life))


NO_DECAY = Decay()


@dataclass(frozen=True)
class Deltas:
    """Per-(item, coordinate) sums from a batch of impressions; one row per distinct pair.

    Attributes
    ----------
    items : (M,) int64
    coords : (M,) int64
    w2 : (M,) float64, Σ w² (epoch-scaled when forgetting is on)
    b : (M,) float64, Σ w · (r − p) (epoch-scaled likewise)
    """

    items: IntArray
    coords: IntArray
    w2: FloatArray
    b: FloatArray

    def __len__(self) -> int:
        return len(self.items)


def aggregate(
    items: ArrayLike,
    indices: ArrayLike,
    weights: ArrayLike,
    residual: ArrayLike,
    t: ArrayLike | None = None,
    decay: Decay = NO_DECAY,
) -> Deltas:
    """Sum a batch of ``E`` impressions into per-(item, coordinate) deltas.

    Parameters
    ----------
    items : (E,) int, the item of each impression
    indices : (E, K) int, the context coordinates of each impression
    weights : (E, K) float, their weights; a 0 weight pads a shorter context
    residual : (E,) float, reward minus prior, ``r − p`` (``−p`` for an impression with no reward)
    t : (E,) float, event times, needed only when ``decay`` forgets

    Applying the result equals applying each impression on its own, in any order.

    >>> dl = aggregate([5, 5], [[0, 1], [0, 2]], [[0.5, 0.5], [1.0, 0.0]], [1.0, -0.2])
    >>> dl.items.tolist(), dl.coords.tolist(), dl.w2.tolist()
    ([5, 5], [0, 1], [1.25, 0.25])
    """
    it = as_index("items", items, 1)
    idx = as_index("indices", indices, 2)
    w = as_float("weights", weights, 2)
    res = as_float("residual", residual, 1)
    same_length(items=it, indices=idx, weights=w, residual=res)
    if idx.shape != w.shape:
        raise ValueError(f"indices/weights: shapes differ, {idx.shape} vs {w.shape}")
    scale: FloatArray | float = 1.0
    if decay.half_life is not None:
        if t is None:
            raise ValueError("t: event times are required when forgetting is on")
        t_arr = as_float("t", t, 1)
        same_length(items=it, t=t_arr)
        scale = decay.scale(t_arr)[:, None]
    if it.size == 0 or idx.shape[1] == 0:
        empty_i = np.empty(0, np.int64)
        return Deltas(empty_i, empty_i.copy(), np.empty(0), np.empty(0))

    w2_each = (w * w * scale).ravel()
    b_each = (w * res[:, None] * scale).ravel()
    item_each = np.repeat(it, idx.shape[1])
    coord_each = idx.ravel()
    keep = w.ravel() != 0.0
    if not keep.all():
        w2_each, b_each = w2_each[keep], b_each[keep]
        item_each, coord_each = item_each[keep], coord_each[keep]
    if item_each.size == 0:
        empty_i = np.empty(0, np.int64)
        return Deltas(empty_i, empty_i.copy(), np.empty(0), np.empty(0))

    # One int64 key per pair makes the grouping a single sort; fall back to a 2-column
    # unique when item ids are too large to share 64 bits with the coordinate.
    stride = int(coord_each.max()) + 1
    if int(item_each.max()) < np.iinfo(np.int64).max // stride:
        keys, inverse = np.unique(item_each * stride + coord_each, return_inverse=True)
        u_items, u_coords = keys // stride, keys % stride
    else:
        pairs, inverse = np.unique(np.stack([item_each, coord_each], 1), axis=0, return_inverse=True)
        u_items, u_coords = pairs[:, 0], pairs[:, 1]
        inverse = inverse.ravel()
    n = len(u_items)
    return Deltas(
        items=u_items.astype(np.int64),
        coords=u_coords.astype(np.int64),
        w2=np.bincount(inverse, weights=w2_each, minlength=n).astype(np.float64),
        b=np.bincount(inverse, weights=b_each, minlength=n).astype(np.float64),
    )


@dataclass
class DiagStats:
    """Dense in-memory Diag statistics for ``n_items`` items over a ``dim``-coordinate context.

    Attributes
    ----------
    lam : ridge λ (> 0); ``d = lam + w2``
    w2 : (n_items, dim) float64, epoch-scaled Σ w²
    b : (n_items, dim) float64, epoch-scaled Σ w · (r − p)
    decay : the forgetting used to scale deltas and reads
    lam0 : (n_items,) float64 or None, each item's own ridge for the pooled residual ``θ_0``
        (``bandits/pooled.py``) in place of ``lam``: how much the offline evidence behind its
        prior is worth. A reading of the bundle that serving sets per request, not learnt
        state: never serialised, and ignored without pooling.

    Serving reads the same two numbers from Redis; this table is what the simulator, the
    benchmark and the tests use.
    """

    lam: float
    w2: FloatArray
    b: FloatArray
    decay: Decay = field(default=NO_DECAY)
    lam0: FloatArray | None = None

    @classmethod
    def empty(cls, n_items: int, dim: int, lam: float = 1.0, decay: Decay = NO_DECAY) -> DiagStats:
        positive("lam", lam)
        if n_items < 0 or dim < 1:
            raise ValueError(f"n_items/dim: need n_items >= 0 and dim >= 1, got {n_items}, {dim}")
        return cls(lam, np.zeros((n_items, dim)), np.zeros((n_items, dim)), decay)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.w2.shape[0]), int(self.w2.shape[1]))

    def gather(self, items: IntArray, coords: IntArray, now: float = 0.0) -> tuple[FloatArray, FloatArray]:
        """Return ``(d, b)`` of shape (N, K) for ``items`` (N,) × ``coords`` (K,), as seen at ``now``."""
        rows = self.w2[items[:, None], coords[None, :]]
        b = self.b[items[:, None], coords[None, :]]
        if self.decay.half_life is not None:
            inv = 1.0 / float(self.decay.scale(now))
            rows = rows * inv
            b = b * inv
        return self.lam + rows, b

    def apply(self, deltas: Deltas) -> None:
        """Add ``deltas`` in place (the one mutating call; scoring never writes)."""
        n_items, dim = self.shape
        if len(deltas) and (deltas.items.max() >= n_items or deltas.coords.max() >= dim):
            raise ValueError(f"deltas: item/coordinate out of range for stats of shape {self.shape}")
        np.add.at(self.w2, (deltas.items, deltas.coords), deltas.w2)
        np.add.at(self.b, (deltas.items, deltas.coords), deltas.b)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        half_life = np.nan if self.decay.half_life is None else self.decay.half_life
        np.savez(buf, lam=self.lam, w2=self.w2, b=self.b, decay=np.array([half_life, self.decay.epoch]))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DiagStats:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            half_life, epoch = (float(x) for x in z["decay"])
            decay = Decay(None if np.isnan(half_life) else half_life, epoch)
            return cls(float(z["lam"]), z["w2"].copy(), z["b"].copy(), decay)


def diag_scores(
    prior: ArrayLike, weights: ArrayLike, d: ArrayLike, b: ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Diag-LinUCB ``mean`` and ``bonus`` for ``N`` candidates sharing one sparse context.

    Parameters
    ----------
    prior : (N,) offline predicted reward ``p_j(u)``
    weights : (K,) context weights ``w``
    d : (N, K) ``λ + Σ w²`` per candidate and active coordinate (all > 0)
    b : (N, K) ``Σ w · (r − p)`` per candidate and active coordinate
    alpha : UCB width ``α`` (>= 0)

    Returns
    -------
    mean : (N,) ``p + Σ_f w·b/d``
    bonus : (N,) ``α · sqrt(Σ_f w²/d)``; ``ucb = mean + bonus``

    >>> mean, bonus = diag_scores([0.1, 0.1], [1.0], [[1.0], [5.0]], [[0.0], [2.0]], alpha=1.0)
    >>> mean.round(3).tolist(), bonus.round(3).tolist()
    ([0.1, 0.5], [1.0, 0.447])
    """
    alpha = non_negative("alpha", alpha)
    p = as_float("prior", prior, 1)
    w = as_float("weights", weights, 1)
    d_arr = as_float("d", d, 2)
    b_arr = as_float("b", b, 2)
    if d_arr.shape != (p.shape[0], w.shape[0]) or b_arr.shape != d_arr.shape:
        raise ValueError(
            f"d/b: expected shape {(p.shape[0], w.shape[0])} (candidates, coordinates), "
            f"got {d_arr.shape} and {b_arr.shape}"
        )
    if d_arr.size and d_arr.min() <= 0:
        raise ValueError("d: must be > 0 (d = λ + Σ w², λ > 0)")
    return _diag_scores(p, w, d_arr, b_arr, alpha)


def _diag_scores(
    p: FloatArray, w: FloatArray, d: FloatArray, b: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    inv_d = 1.0 / d
    mean = p + (b * inv_d) @ w
    bonus = alpha * np.sqrt(inv_d @ (w * w))
    return mean, bonus
