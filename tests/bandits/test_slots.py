from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandits import select_slots, top_k

scores = hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-5, 5, allow_nan=False), unique=True)


@given(scores, st.integers(1, 12), st.integers(0, 12))
def test_without_exploration_the_slate_is_the_greedy_top_k(mean: np.ndarray, k: int, slots: int) -> None:
    slate = select_slots(mean, -mean, k, slots, explore=False)
    np.testing.assert_array_equal(slate.positions, np.argsort(-mean)[: min(k, len(mean))])
    assert not slate.explored.any() and slate.exploration_rate == 0.0


@given(scores, st.integers(1, 12), st.integers(0, 12), st.data())
def test_exploration_fills_at_most_explore_slots_positions(
    mean: np.ndarray, k: int, slots: int, data: st.DataObject
) -> None:
    ucb = data.draw(hnp.arrays(np.float64, len(mean), elements=st.floats(-5, 5, allow_nan=False)))
    slate = select_slots(mean, ucb, k, slots, explore=True)
    n = min(k, len(mean))
    greedy = set(np.argsort(-mean)[:n].tolist())
    assert len(slate.positions) == n == len(set(slate.positions.tolist()))
    assert slate.explored.sum() <= min(slots, n)
    for pos, explored in zip(slate.positions.tolist(), slate.explored.tolist(), strict=True):
        assert explored == (pos not in greedy)
    n_fixed = n - min(slots, n)
    np.testing.assert_array_equal(slate.positions[:n_fixed], np.argsort(-mean)[:n_fixed])


def test_explore_slot_takes_the_best_ucb_outside_the_greedy_positions() -> None:
    mean = np.array([0.9, 0.8, 0.7, 0.1, 0.05])
    ucb = np.array([0.9, 0.8, 0.7, 0.5, 0.95])
    slate = select_slots(mean, ucb, k=3, explore_slots=1, explore=True)
    assert slate.positions.tolist() == [0, 1, 4]
    assert slate.explored.tolist() == [False, False, True]
    assert slate.exploration_rate == pytest.approx(1 / 3)


def test_top_k_breaks_ties_by_index() -> None:
    assert top_k(np.array([1.0, 2.0, 2.0, 0.0, 2.0]), 2).tolist() == [1, 2]


@pytest.mark.parametrize(("k", "slots", "field"), [(0, 1, "k"), (3, -1, "explore_slots")])
def test_bad_slot_arguments_name_the_field(k: int, slots: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        select_slots(np.zeros(3), np.zeros(3), k, slots, explore=True)


def test_mismatched_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="explore_score"):
        select_slots(np.zeros(3), np.zeros(4), 2, 1, explore=True)
