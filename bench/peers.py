"""The peers of the bandit benchmark, behind the simulator's ``Agent`` interface.

Both get what our policies get: the sparse context, the candidates and the offline prior.
- MABWiser ``LinUCB`` (full matrix per arm) learns the residual ``r − p`` on the dense context,
  like our reference ``linucb``; a slate is its top-k by UCB plus prior.
- Vowpal Wabbit ``--ccb_explore_adf`` (its slate reduction over ``cb_explore_adf``) sees the
  context as a shared namespace, the item id and the prior as action features, and learns
  per (cluster, item) weights through ``-q UA``; cost is ``−reward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bandits.checks import FloatArray, IntArray
from bandits.diag import SparseContext
from bandits.policies import Feedback


class MABWiserAgent:
    def __init__(self, n_items: int, dim: int, alpha: float, lam: float, seed: int) -> None:
        from mabwiser.mab import MAB, LearningPolicy

        self.dim = dim
        self.mab = MAB(
            arms=list(range(n_items)), learning_policy=LearningPolicy.LinUCB(alpha=alpha, l2_lambda=lam), seed=seed
        )
        # A zero context leaves A and b unchanged: this only initialises MABWiser's models.
        self.mab.fit([0], [0.0], np.zeros((1, dim)))

    def _dense(self, indices: IntArray, weights: FloatArray) -> FloatArray:
        x = np.zeros(self.dim)
        x[indices] = weights
        return x

    def act(self, t: int, context: SparseContext, items: IntArray, prior: FloatArray, k: int) -> IntArray:
        expectations: dict[int, float] = self.mab.predict_expectations(
            self._dense(context.indices, context.weights)[None, :]
        )
        ucb = prior + np.array([expectations[int(j)] for j in items])
        return np.argsort(-ucb, kind="stable")[:k].astype(np.int64)

    def learn(self, feedback: Feedback) -> None:
        contexts = np.stack([self._dense(i, w) for i, w in zip(feedback.indices, feedback.weights, strict=True)])
        self.mab.partial_fit(feedback.items.tolist(), (feedback.reward - feedback.prior).tolist(), contexts)


class VWAgent:
    """``args`` is the exploration part, e.g. ``--epsilon 0.05`` or ``--squarecb --gamma_scale 100``."""

    def __init__(self, args: str, seed: int) -> None:
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(f"--ccb_explore_adf {args} -q UA --quiet --random_seed {seed}")
        self._pending: dict[int, tuple[list[str], list[tuple[int, float]]]] = {}

    @staticmethod
    def _lines(context: SparseContext, items: IntArray, prior: FloatArray) -> list[str]:
        shared = "ccb shared |U " + " ".join(
            f"c{i}:{w:.5f}" for i, w in zip(context.indices, context.weights, strict=True)
        )
        return [shared] + [f"ccb action |A i{j} |P p:{p:.5f}" for j, p in zip(items, prior, strict=True)]

    def act(self, t: int, context: SparseContext, items: IntArray, prior: FloatArray, k: int) -> IntArray:
        lines = self._lines(context, items, prior)
        prediction: list[list[tuple[int, float]]] = self.vw.predict(lines + ["ccb slot |"] * k)
        # CCB samples each slot inside VW (cb_sample); the first pair is the chosen action.
        chosen = [(int(slot[0][0]), float(slot[0][1])) for slot in prediction]
        self._pending[t] = (lines, chosen)
        return np.array([a for a, _ in chosen], dtype=np.int64)

    def learn(self, feedback: Feedback) -> None:
        # The simulator sends whole slates in decision order; regroup them by round.
        rewards: dict[int, list[float]] = {}
        for t, r in zip(feedback.t.astype(int).tolist(), feedback.reward.tolist(), strict=True):
            rewards.setdefault(t, []).append(r)
        for t, slot_rewards in rewards.items():
            lines, chosen = self._pending.pop(t)
            slots = [f"ccb slot {a}:{-r:.1f}:{p:.6f} |" for (a, p), r in zip(chosen, slot_rewards, strict=True)]
            self.vw.learn(lines + slots)

    def finish(self) -> Any:
        self.vw.finish()
