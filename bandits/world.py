"""A deterministic, seeded world to learn in: the benchmark, the tests and the demo traffic use it.

- Users have latent vectors scattered around ``n_clusters`` centres; a user's context is the
  softmax over cosine similarity to her ``k_nearest`` centres, as serving builds it.
- Items have latent vectors, a popularity bias and content features (a noisy projection of
  the latent vector, as a catalogue would give).
- The click probability of item ``j`` for user ``u`` in slot ``pos`` is
  ``sigmoid(base + bias_j(t) + affinity · u·v_j) / (1 + pos) ** position_bias``.
- The offline prior is that probability (slot 0) with logit noise per item and per
  (cluster, item): larger for fresh items, which the offline model has barely seen, and whose
  predicted logit is also shrunk towards the base rate by ``fresh_prior_shrink`` (the
  cold-start bias of a model trained on interactions: a great new item looks average to it).
- ``n_fresh`` items arrive during the run; ``drift`` moves item biases sinusoidally.
- Each round ranks a retrieved candidate set, as serving does (DESIGN, flow 1): the user's top
  ``n_candidates`` available items by prior, plus up to ``fresh_pool`` items that arrived in the
  last ``fresh_window`` rounds (the fresh-item pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from bandits.checks import FloatArray, IntArray, non_negative, positive
from bandits.diag import SparseContext


@dataclass(frozen=True)
class WorldConfig:
    """Hyperparameters of the synthetic world (all validated once, here)."""

    n_users: int = 4000
    n_clusters: int = 64
    k_nearest: int = 4
    latent_dim: int = 12
    n_items: int = 1000
    n_fresh: int = 200
    horizon: int = 10_000
    n_features: int = 16
    base_logit: float = -2.5
    affinity: float = 2.5
    user_spread: float = 0.35
    membership_temperature: float = 0.05
    prior_noise: float = 0.7
    fresh_prior_noise: float = 1.5
    fresh_prior_shrink: float = 0.5
    position_bias: float = 0.7
    drift: float = 0.0
    max_slots: int = 10
    n_candidates: int = 150
    fresh_pool: int = 50
    fresh_window: int = 2_000
    seed: int = 0
    # Traps of real data (bandits/README.md): an offline prior on the wrong scale (its logit is
    # prior_scale · truth + prior_offset; a rated-pairs model sits near 0.5 where clicks are a
    # few percent), and per-item effects for everyone that the prior does not know
    # (global_effect: their logit standard deviation). A large cold catalogue known by its
    # features only is n_fresh with fresh_prior_noise.
    prior_scale: float = 1.0
    prior_offset: float = 0.0
    global_effect: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_clusters", "k_nearest", "latent_dim", "n_items", "horizon", "max_slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.n_fresh <= self.n_items:
            raise ValueError(f"n_fresh: must be in [0, n_items], got {self.n_fresh}")
        if self.k_nearest > self.n_clusters:
            raise ValueError(f"k_nearest: must be <= n_clusters ({self.n_clusters}), got {self.k_nearest}")
        positive("membership_temperature", self.membership_temperature)
        if not 0.0 <= self.fresh_prior_shrink <= 1.0:
            raise ValueError(f"fresh_prior_shrink: must be in [0, 1], got {self.fresh_prior_shrink}")
        for name in ("prior_noise", "fresh_prior_noise", "position_bias", "drift", "user_spread", "global_effect"):
            non_negative(name, getattr(self, name))


def _unit(x: FloatArray) -> FloatArray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


class World:
    """The world for one seed. All randomness is drawn at construction, so two runs of any
    policy on the same world see the same users, arrivals and click thresholds (common random
    numbers make policy comparisons far less noisy).

    >>> w = World(WorldConfig(n_users=50, n_items=40, n_fresh=10, horizon=100, seed=1))
    >>> ctx = w.context(int(w.users[0]))
    >>> len(ctx.indices), round(float(ctx.weights.sum()), 6)
    (4, 1.0)
    """

    def __init__(self, config: WorldConfig) -> None:
        c = config
        self.config = c
        rng = np.random.default_rng(c.seed)
        self.centres = _unit(rng.standard_normal((c.n_clusters, c.latent_dim)))
        self.user_cluster: IntArray = rng.integers(0, c.n_clusters, c.n_users)
        self.user_vec = _unit(
            self.centres[self.user_cluster] + c.user_spread * rng.standard_normal((c.n_users, c.latent_dim))
        )
        self.item_vec = rng.standard_normal((c.n_items, c.latent_dim)) / np.sqrt(c.latent_dim)
        self.item_bias = 0.5 * rng.standard_normal(c.n_items)
        projection = rng.standard_normal((c.latent_dim, c.n_features))
        self.item_features = self.item_vec @ projection + 0.3 * rng.standard_normal((c.n_items, c.n_features))

        self.is_fresh: NDArray[np.bool_] = np.zeros(c.n_items, dtype=bool)
        self.arrival: IntArray = np.zeros(c.n_items, dtype=np.int64)
        if c.n_fresh:
            fresh = rng.choice(c.n_items, c.n_fresh, replace=False)
            self.is_fresh[fresh] = True
            self.arrival[fresh] = np.sort(rng.integers(int(0.05 * c.horizon), int(0.7 * c.horizon) + 1, c.n_fresh))

        noise = np.where(self.is_fresh, c.fresh_prior_noise, c.prior_noise)
        self.prior_error_item = noise * rng.standard_normal(c.n_items) * np.sqrt(0.5)
        self.prior_error_cluster = noise[None, :] * rng.standard_normal((c.n_clusters, c.n_items)) * np.sqrt(0.5)
        self.drift_phase = rng.uniform(0, 2 * np.pi, c.n_items)

        self.users: IntArray = rng.integers(0, c.n_users, c.horizon)
        self.click_draws = rng.random((c.horizon, c.max_slots))

        sim = self.user_vec @ self.centres.T
        nearest = np.argsort(-sim, axis=1)[:, : c.k_nearest]
        logits = np.take_along_axis(sim, nearest, 1) / c.membership_temperature
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        self.context_indices: IntArray = nearest.astype(np.int64)
        self.context_weights: FloatArray = w / w.sum(axis=1, keepdims=True)
        # Drawn last, so that worlds without it keep every other draw of their seed.
        self.global_effect = c.global_effect * rng.standard_normal(c.n_items)

    @property
    def dim(self) -> int:
        """Context dimension: one coordinate per cluster."""
        return self.config.n_clusters

    @cached_property
    def fresh_items(self) -> IntArray:
        return np.flatnonzero(self.is_fresh).astype(np.int64)

    def available(self, t: int) -> IntArray:
        """Items that exist at round ``t`` (fresh items appear at their arrival round)."""
        return np.flatnonzero(self.arrival <= t).astype(np.int64)

    def candidates(self, t: int, user: int) -> IntArray:
        """The retrieved candidates at round ``t``: top items by prior plus the fresh pool, sorted."""
        c = self.config
        items = self.available(t)
        prior = self.prior(user, items)
        top = items[np.argsort(-prior, kind="stable")[: c.n_candidates]]
        recent = items[(self.arrival[items] > 0) & (self.arrival[items] > t - c.fresh_window)]
        pool = recent[np.argsort(-self.arrival[recent], kind="stable")[: c.fresh_pool]]
        return np.union1d(top, pool).astype(np.int64)

    def context(self, user: int) -> SparseContext:
        return SparseContext(self.context_indices[user], self.context_weights[user])

    def _logit(self, user: int, items: IntArray, t: int) -> FloatArray:
        c = self.config
        bias = self.item_bias[items]
        if c.drift:
            bias = bias + c.drift * np.sin(2 * np.pi * t / c.horizon + self.drift_phase[items])
        affinity = c.affinity * (self.item_vec[items] @ self.user_vec[user])
        return np.asarray(c.base_logit + bias + self.global_effect[items] + affinity)

    def ctr(self, user: int, items: IntArray, t: int) -> FloatArray:
        """True click probability in the top slot, shape (N,)."""
        return _sigmoid(self._logit(user, items, t))

    def prior(self, user: int, items: IntArray) -> FloatArray:
        """The offline model's prediction: the static truth plus logit noise, shape (N,)."""
        c = self.config
        m = self.user_cluster[user]
        error = self.prior_error_item[items] + self.prior_error_cluster[m, items]
        logit = self._logit(user, items, 0) - c.drift * np.sin(self.drift_phase[items]) - self.global_effect[items]
        shrink = np.where(self.is_fresh[items], c.fresh_prior_shrink, 0.0)
        logit = logit - shrink * (logit - c.base_logit)
        return _sigmoid(c.prior_scale * (logit + error) + c.prior_offset)

    def slot_bias(self, k: int) -> FloatArray:
        return np.asarray(1.0 / (1.0 + np.arange(k)) ** self.config.position_bias)

    def click(self, t: int, user: int, slate: IntArray) -> FloatArray:
        """Bernoulli clicks for the items shown in slots 0..k-1 at round ``t``, shape (k,)."""
        k = len(slate)
        if k > self.config.max_slots:
            raise ValueError(f"slate: at most {self.config.max_slots} slots, got {k}")
        p = self.ctr(user, slate, t) * self.slot_bias(k)
        return (self.click_draws[t, :k] < p).astype(np.float64)

    def expected(self, t: int, user: int, slate: IntArray) -> float:
        return float(self.ctr(user, slate, t) @ self.slot_bias(len(slate)))

    def oracle(self, t: int, user: int, k: int, candidates: IntArray) -> float:
        """Expected clicks of the best slate of ``k`` of the ``candidates``."""
        ctr = self.ctr(user, candidates, t)
        best = np.sort(ctr)[::-1][:k]
        return float(best @ self.slot_bias(len(best)))
