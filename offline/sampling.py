"""The streaming frequency estimate behind logQ correction (Yi et al., RecSys 2019, Algorithm 2).

In-batch softmax treats the other items of a batch as negatives, so popular items are
over-penalised; subtracting ``log p_j`` (the probability that item j appears in a batch) from
the logits corrects the bias. ``p_j`` comes from a streaming estimate of the gap between
occurrences of j: with arrays ``A`` (last step seen) and ``B`` (estimated gap) over hash buckets,

    B[h(j)] ← (1 − α) · B[h(j)] + α · (t − A[h(j)]);   A[h(j)] ← t;   p_j = 1 / B[h(j)].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bandits.checks import FloatArray, IntArray


@dataclass
class FrequencyEstimator:
    """Streaming estimate of each item's occurrence probability per step.

    ``n_buckets`` hash buckets (items are already dense ids here, so ``h(j) = j mod n_buckets``);
    ``alpha`` the learning rate of the gap estimate.

    >>> est = FrequencyEstimator(n_buckets=10, alpha=0.05)
    >>> for step in range(2000):
    ...     est.update(np.array([0] if step % 2 == 0 else [1, 2]))
    >>> est.probability(np.array([0, 1])).round(2).tolist()
    [0.5, 0.5]
    """

    n_buckets: int
    alpha: float = 0.01
    step: int = 0
    last: NDArray[np.int64] = field(init=False)
    gap: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        if self.n_buckets < 1:
            raise ValueError(f"n_buckets: must be >= 1, got {self.n_buckets}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha: must be in (0, 1], got {self.alpha}")
        self.last = np.full(self.n_buckets, -1, dtype=np.int64)
        self.gap = np.zeros(self.n_buckets)

    def update(self, items: IntArray) -> None:
        """Record one step (batch) in which ``items`` (B,) occurred."""
        self.step += 1
        buckets = np.unique(np.asarray(items, dtype=np.int64) % self.n_buckets)
        seen = self.last[buckets] >= 0
        # The first sighting has no gap yet: start the estimate at the steps observed so far.
        delta = np.where(seen, self.step - self.last[buckets], self.step).astype(np.float64)
        self.gap[buckets] = np.where(
            self.gap[buckets] > 0, (1 - self.alpha) * self.gap[buckets] + self.alpha * delta, delta
        )
        self.last[buckets] = self.step

    def probability(self, items: IntArray) -> FloatArray:
        """Estimated per-step occurrence probability (N,); items never seen get 1 / steps."""
        gap = self.gap[np.asarray(items, dtype=np.int64) % self.n_buckets]
        floor = max(self.step, 1)
        return np.asarray(1.0 / np.where(gap > 0, gap, floor))
