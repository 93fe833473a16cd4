"""Bandit policies with one interface, and a registry by name.

Each policy is a frozen config plus pure functions over a separate state object:

- ``init_state(n_items, dim)`` makes empty learned state;
- ``score(state, context, items, prior, rng, now)`` returns ``Scores`` and never writes;
- ``update(state, feedback)`` adds a batch of impressions to the state (the only write).

The Diag family (``diag_linucb``, ``diag_ts``, ``epsilon_greedy``, ``greedy``) shares one
state type, ``DiagStats``, so a surface can switch among them without resetting what it learnt.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from bandits.checks import (
    FloatArray,
    IntArray,
    as_float,
    as_index,
    fraction,
    non_negative,
    positive,
    same_length,
)
from bandits.diag import Decay, DiagStats, SparseContext, _diag_scores, aggregate
from bandits.pooled import _pooled_scores, pooled_sample


@dataclass(frozen=True)
class Scores:
    """Scores for ``N`` candidates.

    Attributes
    ----------
    mean : (N,) exploitation score; the greedy ranking
    explore : (N,) exploration score for the exploration slots (``ucb`` for LinUCB variants)
    """

    mean: FloatArray
    explore: FloatArray


@dataclass(frozen=True)
class Feedback:
    """A batch of ``E`` impressions with their outcome.

    Attributes
    ----------
    items : (E,) int64 item index
    indices : (E, K) int64 context coordinates at decision time
    weights : (E, K) float64 context weights (0 pads a shorter context)
    prior : (E,) float64 offline prediction logged with the impression
    reward : (E,) float64 observed reward (0 when none)
    t : (E,) float64 event time (used by forgetting)
    exam : (E,) float64 examination weight of the slot each item was shown in (1: the top
        slot, or no position model); the update is ``w2 += (w·e)²``, ``b += w·e·(r − e·p)``,
        the regression of ``E[r] = e·(p + θ)`` (``bandits/README.md``)
    """

    items: IntArray
    indices: IntArray
    weights: FloatArray
    prior: FloatArray
    reward: FloatArray
    t: FloatArray
    exam: FloatArray

    @classmethod
    def of(
        cls,
        items: ArrayLike,
        indices: ArrayLike,
        weights: ArrayLike,
        prior: ArrayLike,
        reward: ArrayLike,
        t: ArrayLike | None = None,
        exam: ArrayLike | None = None,
    ) -> Feedback:
        it = as_index("items", items, 1)
        idx = as_index("indices", indices, 2)
        w = as_float("weights", weights, 2)
        p = as_float("prior", prior, 1)
        r = as_float("reward", reward, 1)
        t_arr = np.zeros(len(it)) if t is None else as_float("t", t, 1)
        e = np.ones(len(it)) if exam is None else as_float("exam", exam, 1)
        same_length(items=it, indices=idx, weights=w, prior=p, reward=r, t=t_arr, exam=e)
        if idx.shape != w.shape:
            raise ValueError(f"indices/weights: shapes differ, {idx.shape} vs {w.shape}")
        if len(e) and (e.min() < 0.0 or e.max() > 1.0):
            raise ValueError("exam: examination weights must lie in [0, 1]")
        return cls(it, idx, w, p, r, t_arr, e)

    def __len__(self) -> int:
        return len(self.items)


S = TypeVar("S")


class Policy(Protocol[S]):
    """What every registered policy provides; see the module docstring."""

    name: ClassVar[str]

    def init_state(self, n_items: int, dim: int) -> S: ...

    def score(
        self,
        state: S,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores: ...

    def update(self, state: S, feedback: Feedback) -> None: ...

    def state_to_bytes(self, state: S) -> bytes: ...

    def state_from_bytes(self, data: bytes) -> S: ...


def _check_score_args(
    state_shape: tuple[int, int], items: ArrayLike, prior: ArrayLike, context: SparseContext
) -> tuple[IntArray, FloatArray]:
    it = as_index("items", items, 1, upper=state_shape[0])
    p = as_float("prior", prior, 1)
    same_length(items=it, prior=p)
    if len(context.indices) and context.indices.max() >= state_shape[1]:
        raise ValueError(f"context.indices: coordinate {int(context.indices.max())} out of range (< {state_shape[1]})")
    return it, p


class _DiagFamily:
    """Shared state handling of the policies that read ``DiagStats``.

    With ``config.lam_pool`` set, the state's last coordinate is the pool coordinate
    (``bandits/pooled.py``): every update adds to it with weight 1, and scores read the
    pooled residual. Contexts then name only the other coordinates.
    """

    config: Any

    def init_state(self, n_items: int, dim: int) -> DiagStats:
        return DiagStats.empty(n_items, dim, self.config.lam, Decay(self.config.half_life))

    def update(self, state: DiagStats, feedback: Feedback) -> None:
        if state.shape[0] and len(feedback) and feedback.items.max() >= state.shape[0]:
            raise ValueError(f"items: index {int(feedback.items.max())} out of range (< {state.shape[0]})")
        indices, weights = feedback.indices, feedback.weights
        if self.config.lam_pool is not None:
            pool = np.full((len(feedback), 1), state.shape[1] - 1, dtype=np.int64)
            indices, weights = np.hstack([indices, pool]), np.hstack([weights, np.ones((len(feedback), 1))])
        e = feedback.exam
        state.apply(
            aggregate(
                feedback.items,
                indices,
                weights * e[:, None],
                feedback.reward - e * feedback.prior,
                feedback.t,
                state.decay,
            )
        )

    def state_to_bytes(self, state: DiagStats) -> bytes:
        return state.to_bytes()

    def state_from_bytes(self, data: bytes) -> DiagStats:
        return DiagStats.from_bytes(data)

    def _pooled_stats(
        self, state: DiagStats, context: SparseContext, items: ArrayLike, prior: ArrayLike, now: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray | float]:
        """``(p, w2, b, n0, b0, lam0)``: the clusters' sums (N, K), the pool coordinate's (N,),
        and the ridge of each item's ``θ_0`` (``state.lam0`` of the items, else ``state.lam``)."""
        it, p = _check_score_args(state.shape, items, prior, context)
        pool = state.shape[1] - 1
        if len(context.indices) and context.indices.max() >= pool:
            raise ValueError(f"context.indices: coordinate {pool} is the pool coordinate; contexts stop below it")
        d, b = state.gather(it, np.append(context.indices, pool), now)
        w2 = d - state.lam
        lam0 = state.lam if state.lam0 is None else np.asarray(state.lam0[it], dtype=np.float64)
        return p, w2[:, :-1], b[:, :-1], w2[:, -1], b[:, -1], lam0

    def _mean_bonus(
        self, state: DiagStats, context: SparseContext, items: ArrayLike, prior: ArrayLike, now: float, alpha: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if self.config.lam_pool is not None:
            p, w2, b, n0, b0, lam0 = self._pooled_stats(state, context, items, prior, now)
            mean, bonus = _pooled_scores(p, context.weights, w2, b, n0, b0, lam0, self.config.lam_pool, alpha)
            return mean, bonus, state.lam + w2, b
        it, p = _check_score_args(state.shape, items, prior, context)
        d, b = state.gather(it, context.indices, now)
        mean, bonus = _diag_scores(p, context.weights, d, b, alpha)
        return mean, bonus, d, b


def _check_pool(lam_pool: float | None) -> None:
    if lam_pool is not None:
        positive("lam_pool", lam_pool)


@dataclass(frozen=True)
class DiagLinUCBConfig:
    """``alpha``: UCB width; ``lam``: ridge λ; ``half_life``: forgetting (None: off);
    ``lam_pool``: pooled residual strength λ_c (None: plain per-coordinate Diag)."""

    alpha: float = 1.0
    lam: float = 1.0
    half_life: float | None = None
    lam_pool: float | None = None

    def __post_init__(self) -> None:
        non_negative("alpha", self.alpha)
        positive("lam", self.lam)
        _check_pool(self.lam_pool)
        if self.half_life is not None:
            positive("half_life", self.half_life)


class DiagLinUCB(_DiagFamily):
    """Diag-LinUCB around an offline prior: ``explore = p + Σ w·b/d + α·sqrt(Σ w²/d)``.

    >>> pol = DiagLinUCB(DiagLinUCBConfig(alpha=1.0))
    >>> stats = pol.init_state(n_items=3, dim=4)
    >>> ctx = SparseContext.of([0, 2], [0.5, 0.5])
    >>> pol.update(stats, Feedback.of([1, 1], [[0, 2]] * 2, [[0.5, 0.5]] * 2, [0.1, 0.1], [1.0, 1.0]))
    >>> s = pol.score(stats, ctx, np.array([0, 1, 2]), np.array([0.1, 0.1, 0.1]), np.random.default_rng(0))
    >>> bonus = s.explore - s.mean  # the unseen item 0 keeps the larger bonus
    >>> int(np.argmax(s.mean)), bool(bonus[0] > bonus[1])
    (1, True)
    """

    name: ClassVar[str] = "diag_linucb"

    def __init__(self, config: DiagLinUCBConfig | None = None) -> None:
        self.config = config or DiagLinUCBConfig()

    def score(
        self,
        state: DiagStats,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        mean, bonus, _, _ = self._mean_bonus(state, context, items, prior, now, self.config.alpha)
        return Scores(mean, mean + bonus)


@dataclass(frozen=True)
class DiagThompsonConfig:
    """``sigma``: posterior scale (θ ~ N(b/d, σ²/d)); ``lam``: ridge λ; ``half_life``: forgetting;
    ``lam_pool``: pooled residual (``bandits/pooled.py``)."""

    sigma: float = 0.5
    lam: float = 1.0
    half_life: float | None = None
    lam_pool: float | None = None

    def __post_init__(self) -> None:
        non_negative("sigma", self.sigma)
        positive("lam", self.lam)
        _check_pool(self.lam_pool)
        if self.half_life is not None:
            positive("half_life", self.half_life)


class DiagThompson(_DiagFamily):
    """Diag-Thompson sampling on the Diag statistics; ``explore = p + Σ_f w·θ_f``.

    >>> pol = DiagThompson(DiagThompsonConfig(sigma=0.5))
    >>> stats = pol.init_state(n_items=2, dim=2)
    >>> ctx = SparseContext.of([0], [1.0])
    >>> a = pol.score(stats, ctx, np.array([0, 1]), np.zeros(2), np.random.default_rng(7)).explore
    >>> b = pol.score(stats, ctx, np.array([0, 1]), np.zeros(2), np.random.default_rng(7)).explore
    >>> bool((a == b).all())
    True
    """

    name: ClassVar[str] = "diag_ts"

    def __init__(self, config: DiagThompsonConfig | None = None) -> None:
        self.config = config or DiagThompsonConfig()

    def score(
        self,
        state: DiagStats,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        if self.config.lam_pool is not None:
            p, w2, b, n0, b0, lam0 = self._pooled_stats(state, context, items, prior, now)
            mean, _ = _pooled_scores(p, context.weights, w2, b, n0, b0, lam0, self.config.lam_pool, 0.0)
            draw = pooled_sample(p, context.weights, w2, b, n0, b0, lam0, self.config.lam_pool,
                                 self.config.sigma, rng)  # fmt: skip
            return Scores(mean, draw)
        mean, _, d, b = self._mean_bonus(state, context, items, prior, now, 0.0)
        theta = b / d + self.config.sigma / np.sqrt(d) * rng.standard_normal(d.shape)
        return Scores(mean, prior + theta @ context.weights)


@dataclass(frozen=True)
class EpsilonGreedyConfig:
    """``epsilon``: share of decisions whose exploration slots are filled at random."""

    epsilon: float = 0.05
    lam: float = 1.0
    half_life: float | None = None
    lam_pool: float | None = None

    def __post_init__(self) -> None:
        fraction("epsilon", self.epsilon)
        positive("lam", self.lam)
        _check_pool(self.lam_pool)
        if self.half_life is not None:
            positive("half_life", self.half_life)


class EpsilonGreedy(_DiagFamily):
    """ε-greedy on the Diag mean: with probability ε the exploration score is uniform noise.

    >>> pol = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.0))
    >>> ctx, rng = SparseContext.of([0], [1.0]), np.random.default_rng(0)
    >>> s = pol.score(pol.init_state(2, 1), ctx, np.array([0, 1]), np.array([0.2, 0.3]), rng)
    >>> bool((s.explore == s.mean).all())
    True
    """

    name: ClassVar[str] = "epsilon_greedy"

    def __init__(self, config: EpsilonGreedyConfig | None = None) -> None:
        self.config = config or EpsilonGreedyConfig()

    def score(
        self,
        state: DiagStats,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        mean, _, _, _ = self._mean_bonus(state, context, items, prior, now, 0.0)
        if rng.random() < self.config.epsilon:
            return Scores(mean, rng.random(len(mean)))
        return Scores(mean, mean)


@dataclass(frozen=True)
class GreedyConfig:
    """Greedy is Diag-LinUCB with ``alpha = 0``: it learns the residual but never explores."""

    lam: float = 1.0
    half_life: float | None = None
    lam_pool: float | None = None

    def __post_init__(self) -> None:
        positive("lam", self.lam)
        _check_pool(self.lam_pool)
        if self.half_life is not None:
            positive("half_life", self.half_life)


class Greedy(_DiagFamily):
    """Rank by ``p + Σ w·b/d``; the exploration score equals the mean.

    >>> pol = Greedy()
    >>> ctx, rng = SparseContext.of([0], [1.0]), np.random.default_rng(0)
    >>> s = pol.score(pol.init_state(2, 1), ctx, np.array([0, 1]), np.array([0.2, 0.3]), rng)
    >>> s.mean.tolist() == s.explore.tolist() == [0.2, 0.3]
    True
    """

    name: ClassVar[str] = "greedy"

    def __init__(self, config: GreedyConfig | None = None) -> None:
        self.config = config or GreedyConfig()

    def score(
        self,
        state: DiagStats,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        mean, _, _, _ = self._mean_bonus(state, context, items, prior, now, 0.0)
        return Scores(mean, mean)


@dataclass(frozen=True)
class RandomConfig:
    """No hyperparameters: a uniformly random ranking."""


class RandomPolicy:
    """Uniformly random ranking; it keeps no state beyond an item count.

    >>> pol = RandomPolicy()
    >>> ctx, rng = SparseContext.of([0], [1.0]), np.random.default_rng(0)
    >>> s = pol.score(pol.init_state(3, 1), ctx, np.array([0, 1, 2]), np.zeros(3), rng)
    >>> len(s.mean)
    3
    """

    name: ClassVar[str] = "random"

    def __init__(self, config: RandomConfig | None = None) -> None:
        self.config = config or RandomConfig()

    def init_state(self, n_items: int, dim: int) -> DiagStats:
        # Random learns nothing, but keeping the Diag state type lets a surface switch to and
        # from it without losing the statistics the other policies gathered.
        return DiagStats.empty(n_items, dim)

    def score(
        self,
        state: DiagStats,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        it, _ = _check_score_args(state.shape, items, prior, context)
        noise = rng.random(len(it))
        return Scores(noise, noise)

    def update(self, state: DiagStats, feedback: Feedback) -> None:
        if state.shape[0] and len(feedback) and feedback.items.max() >= state.shape[0]:
            raise ValueError(f"items: index {int(feedback.items.max())} out of range (< {state.shape[0]})")

    def state_to_bytes(self, state: DiagStats) -> bytes:
        return state.to_bytes()

    def state_from_bytes(self, data: bytes) -> DiagStats:
        return DiagStats.from_bytes(data)


@dataclass
class LinUCBState:
    """Full-matrix LinUCB state per item.

    Attributes
    ----------
    a_inv : (n_items, dim, dim) float64, ``(λI + Σ x xᵀ)⁻¹`` kept by Sherman–Morrison
    b : (n_items, dim) float64, ``Σ x · (r − p)``
    """

    a_inv: FloatArray
    b: FloatArray


@dataclass(frozen=True)
class LinUCBConfig:
    """``alpha``: UCB width; ``lam``: ridge λ."""

    alpha: float = 1.0
    lam: float = 1.0

    def __post_init__(self) -> None:
        non_negative("alpha", self.alpha)
        positive("lam", self.lam)


class LinUCB:
    """Full-matrix LinUCB (Li et al. 2010) on the same residual: the reference Diag-LinUCB
    approximates. Memory is ``n_items · dim²`` and each update costs ``dim²``.

    >>> pol = LinUCB(LinUCBConfig(alpha=1.0))
    >>> st = pol.init_state(2, 3)
    >>> pol.update(st, Feedback.of([0], [[0, 1]], [[0.6, 0.8]], [0.0], [1.0]))
    >>> s = pol.score(st, SparseContext.of([0, 1], [0.6, 0.8]), np.array([0, 1]), np.zeros(2), np.random.default_rng(0))
    >>> bonus = s.explore - s.mean
    >>> bool(s.mean[0] > s.mean[1]), bool(bonus[1] > bonus[0])
    (True, True)
    """

    name: ClassVar[str] = "linucb"

    def __init__(self, config: LinUCBConfig | None = None) -> None:
        self.config = config or LinUCBConfig()

    def init_state(self, n_items: int, dim: int) -> LinUCBState:
        if n_items < 0 or dim < 1:
            raise ValueError(f"n_items/dim: need n_items >= 0 and dim >= 1, got {n_items}, {dim}")
        eye = np.eye(dim) / self.config.lam
        return LinUCBState(np.repeat(eye[None], n_items, axis=0), np.zeros((n_items, dim)))

    def score(
        self,
        state: LinUCBState,
        context: SparseContext,
        items: IntArray,
        prior: FloatArray,
        rng: np.random.Generator,
        now: float = 0.0,
    ) -> Scores:
        shape = (state.b.shape[0], state.b.shape[1])
        it, p = _check_score_args(shape, items, prior, context)
        idx, w = context.indices, context.weights
        rows = state.a_inv[it[:, None], idx[None, :], :]  # (N, K, dim)
        theta_at_x = np.einsum("nkd,nd->nk", rows, state.b[it])  # (A⁻¹b)[f] for active f
        mean = p + theta_at_x @ w
        quad = np.einsum("nkl,k,l->n", rows[:, :, idx], w, w)
        return Scores(mean, mean + self.config.alpha * np.sqrt(np.maximum(quad, 0.0)))

    def update(self, state: LinUCBState, feedback: Feedback) -> None:
        n_items = state.b.shape[0]
        if len(feedback) and feedback.items.max() >= n_items:
            raise ValueError(f"items: index {int(feedback.items.max())} out of range (< {n_items})")
        residual = feedback.reward - feedback.prior
        # Sherman–Morrison is inherently sequential; this loop is the cost Diag avoids.
        for j, idx, w, res in zip(feedback.items, feedback.indices, feedback.weights, residual, strict=True):
            a_inv = state.a_inv[j]
            u = a_inv[:, idx] @ w
            a_inv -= np.outer(u, u) / (1.0 + w @ u[idx])
            np.add.at(state.b[j], idx, w * res)

    def state_to_bytes(self, state: LinUCBState) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, a_inv=state.a_inv, b=state.b)
        return buf.getvalue()

    def state_from_bytes(self, data: bytes) -> LinUCBState:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return LinUCBState(z["a_inv"].copy(), z["b"].copy())


_REGISTRY: dict[str, tuple[type[Any], type[Any]]] = {
    DiagLinUCB.name: (DiagLinUCB, DiagLinUCBConfig),
    DiagThompson.name: (DiagThompson, DiagThompsonConfig),
    LinUCB.name: (LinUCB, LinUCBConfig),
    EpsilonGreedy.name: (EpsilonGreedy, EpsilonGreedyConfig),
    Greedy.name: (Greedy, GreedyConfig),
    RandomPolicy.name: (RandomPolicy, RandomConfig),
}

POLICY_NAMES: tuple[str, ...] = tuple(_REGISTRY)
DIAG_FAMILY: frozenset[str] = frozenset({"diag_linucb", "diag_ts", "epsilon_greedy", "greedy", "random"})


def make_policy(name: str, **params: Any) -> Policy[Any]:
    """Build a registered policy from its name and config fields.

    >>> make_policy("diag_linucb", alpha=0.3).config
    DiagLinUCBConfig(alpha=0.3, lam=1.0, half_life=None, lam_pool=None)
    """
    if name not in _REGISTRY:
        raise ValueError(f"policy: unknown {name!r}; known: {', '.join(POLICY_NAMES)}")
    cls, config_cls = _REGISTRY[name]
    allowed = {f.name for f in fields(config_cls)}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a parameter of {name} (allowed: {sorted(allowed)})")
    policy: Policy[Any] = cls(config_cls(**params))
    return policy


def config_fields(name: str) -> tuple[str, ...]:
    """Names of the hyperparameters of a registered policy."""
    if name not in _REGISTRY:
        raise ValueError(f"policy: unknown {name!r}; known: {', '.join(POLICY_NAMES)}")
    return tuple(f.name for f in fields(_REGISTRY[name][1]))
