"""Hypothesis strategies shared by the test areas (attrs keeps its strategies the same way)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandits import Feedback

N_ITEMS = 6
DIM = 5
K = 3


@st.composite
def feedback_batches(
    draw: st.DrawFn, max_events: int = 20, with_reward: bool = True, dim: int = DIM, with_exam: bool = False
) -> Feedback:
    """A batch of impressions over ``N_ITEMS`` items and a ``dim``-coordinate context; with
    ``with_exam``, each shown at a slot with a random examination weight in [0, 1]."""
    e = draw(st.integers(1, max_events))
    items = draw(hnp.arrays(np.int64, e, elements=st.integers(0, N_ITEMS - 1)))
    indices = np.stack([draw(st.permutations(range(dim)))[:K] for _ in range(e)]).astype(np.int64)
    weights = draw(hnp.arrays(np.float64, (e, K), elements=st.floats(0.0, 1.0, allow_nan=False)))
    prior = draw(hnp.arrays(np.float64, e, elements=st.floats(0.0, 1.0, allow_nan=False)))
    rewards = st.sampled_from([0.0, 1.0]) if with_reward else st.just(0.0)
    reward = draw(hnp.arrays(np.float64, e, elements=rewards))
    t = np.sort(draw(hnp.arrays(np.float64, e, elements=st.floats(0.0, 100.0, allow_nan=False))))
    exams = st.floats(0.0, 1.0, allow_nan=False) if with_exam else st.just(1.0)
    exam = draw(hnp.arrays(np.float64, e, elements=exams))
    return Feedback.of(items, indices, weights, prior, reward, t, exam)


def contexts() -> st.SearchStrategy[tuple[list[int], list[float]]]:
    """(indices, weights) of a sparse context with ``K`` distinct coordinates below ``DIM``."""
    return st.tuples(
        st.permutations(range(DIM)).map(lambda p: list(p[:K])),
        st.lists(st.floats(0.01, 1.0, allow_nan=False), min_size=K, max_size=K),
    )
