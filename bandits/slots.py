"""Slot selection: the greedy top-k by ``mean``, with up to ``explore_slots`` positions given to
the best exploration scores (``ucb``, a Thompson sample, ...) on exploration traffic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandits.checks import FloatArray, IntArray, as_float


@dataclass(frozen=True)
class Slate:
    """The served order of a response.

    Attributes
    ----------
    positions : (k,) int64, indices into the candidate arrays, in served order
    explored : (k,) bool, True where the item is not in the greedy top-k by ``mean``
    """

    positions: IntArray
    explored: NDArray[np.bool_]

    @property
    def exploration_rate(self) -> float:
        """Share of served slots whose item is not in the greedy top-k (0 for an empty slate)."""
        return float(self.explored.mean()) if len(self.explored) else 0.0


def top_k(scores: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` largest ``scores``, best first; ties go to the lower index."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition leaves ties at the boundary arbitrary; the lexsort makes them stable.
        return part[np.lexsort((part, -scores[part]))].astype(np.int64)
    return np.argsort(-scores, kind="stable").astype(np.int64)


def select_slots(
    mean: FloatArray,
    explore_score: FloatArray,
    k: int,
    explore_slots: int,
    explore: bool,
) -> Slate:
    """Choose ``k`` of ``N`` candidates.

    Parameters
    ----------
    mean : (N,) exploitation score; the greedy top-k is ranked by it
    explore_score : (N,) exploration score (``mean + bonus`` for Diag-LinUCB)
    k : slots to fill (fewer when N < k)
    explore_slots : how many of the last positions may go to exploration
    explore : whether this request is exploration traffic

    The first ``k - explore_slots`` positions keep the greedy order; the rest take the best
    ``explore_score`` among candidates not already placed. An item placed there that was in
    the greedy top-k anyway is not counted as explored.

    >>> s = select_slots(np.array([0.9, 0.5, 0.1]), np.array([0.9, 0.5, 2.0]), 2, 1, True)
    >>> s.positions.tolist(), s.explored.tolist()
    ([0, 2], [False, True])
    """
    mean = as_float("mean", mean, 1)
    explore_score = as_float("explore_score", explore_score, 1)
    if mean.shape != explore_score.shape:
        raise ValueError(f"explore_score: shape {explore_score.shape} differs from mean {mean.shape}")
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if explore_slots < 0:
        raise ValueError(f"explore_slots: must be >= 0, got {explore_slots}")
    greedy = top_k(mean, k)
    n_served = len(greedy)
    n_explore = min(explore_slots, n_served) if explore else 0
    if n_explore == 0:
        return Slate(greedy, np.zeros(n_served, dtype=bool))
    fixed = greedy[: n_served - n_explore]
    open_score = explore_score.copy()
    open_score[fixed] = -np.inf
    picks = top_k(open_score, n_explore)
    positions = np.concatenate([fixed, picks])
    explored = ~np.isin(positions, greedy)
    return Slate(positions, explored)


def reserve_slots(slate: Slate, explore_score: FloatArray, eligible: NDArray[np.bool_], n: int) -> Slate:
    """Give the last ``n`` positions of ``slate`` to the best ``explore_score`` among ``eligible``
    candidates (N,), unless the slate holds that many eligible items already.

    Fresh content is explored on purpose (the Online Matching paper's dedicated exploration):
    an item published between two offline runs has no evidence, so neither the greedy order nor
    the small share of exploration traffic shows it often enough to learn within the hour. A
    reserved slot at the bottom of the slate, where examination is lowest, costs little; the
    bonus among the eligible picks the least known of the promising ones. Items placed there
    are counted as explored.

    >>> s = Slate(np.array([0, 1, 2]), np.zeros(3, dtype=bool))
    >>> r = reserve_slots(s, np.array([0.9, 0.8, 0.7, 0.1, 0.5]), np.array([0, 0, 0, 1, 1], bool), 1)
    >>> r.positions.tolist(), r.explored.tolist()
    ([0, 1, 4], [False, False, True])
    """
    have = int(eligible[slate.positions].sum())
    want = min(n, len(slate.positions)) - have
    if want <= 0:
        return slate
    open_score = np.where(eligible, explore_score, -np.inf)
    open_score[slate.positions] = -np.inf
    picks = top_k(open_score, want)
    picks = picks[np.isfinite(open_score[picks])]
    if len(picks) == 0:
        return slate
    # Replace the lowest positions that do not already hold an eligible item.
    replaceable = [p for p in range(len(slate.positions) - 1, -1, -1) if not eligible[slate.positions[p]]]
    positions, explored = slate.positions.copy(), slate.explored.copy()
    for slot, pick in zip(replaceable, picks.tolist(), strict=False):
        positions[slot], explored[slot] = pick, True
    return Slate(positions, explored)
