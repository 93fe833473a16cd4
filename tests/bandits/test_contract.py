"""Contract tests run over every registered policy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bandits import Feedback, Policy, SparseContext, make_policy
from bandits.simulate import PolicyAgent, run
from bandits.world import World

N_ITEMS, DIM = 30, 8


def _feedback(rng: np.random.Generator, n: int = 40) -> Feedback:
    idx = np.stack([rng.choice(DIM, 3, replace=False) for _ in range(n)])
    return Feedback.of(
        rng.integers(0, N_ITEMS, n),
        idx,
        rng.dirichlet(np.ones(3), n),
        rng.random(n) * 0.3,
        (rng.random(n) < 0.2).astype(float),
        np.arange(n, dtype=float),
    )


def _trained(policy: Policy[object]) -> object:
    state = policy.init_state(N_ITEMS, DIM)
    policy.update(state, _feedback(np.random.default_rng(1)))
    return state


def test_seeded_runs_repeat(policy: Policy[object], small_world: World) -> None:
    first = run(small_world, PolicyAgent.of(policy, small_world, seed=3), k=3)
    again = run(small_world, PolicyAgent.of(policy, small_world, seed=3), k=3)
    assert first.expected == again.expected
    np.testing.assert_array_equal(first.impressions, again.impressions)


def test_scoring_never_writes(policy: Policy[object]) -> None:
    state = _trained(policy)
    before = policy.state_to_bytes(state)
    ctx = SparseContext.of([1, 4, 6], [0.5, 0.3, 0.2])
    items, prior = np.arange(N_ITEMS), np.linspace(0, 0.5, N_ITEMS)
    items_copy, prior_copy, w_copy = items.copy(), prior.copy(), ctx.weights.copy()
    policy.score(state, ctx, items, prior, np.random.default_rng(0))
    assert policy.state_to_bytes(state) == before
    np.testing.assert_array_equal(items, items_copy)
    np.testing.assert_array_equal(prior, prior_copy)
    np.testing.assert_array_equal(ctx.weights, w_copy)


def test_update_leaves_inputs_untouched(policy: Policy[object]) -> None:
    fb = _feedback(np.random.default_rng(2))
    copies = {name: getattr(fb, name).copy() for name in ("items", "indices", "weights", "prior", "reward", "t")}
    policy.update(policy.init_state(N_ITEMS, DIM), fb)
    for name, arr in copies.items():
        np.testing.assert_array_equal(getattr(fb, name), arr, err_msg=name)


def test_state_round_trips_through_bytes(policy: Policy[object]) -> None:
    state = _trained(policy)
    data = policy.state_to_bytes(state)
    restored = policy.state_from_bytes(data)
    assert policy.state_to_bytes(restored) == data
    ctx = SparseContext.of([0, 2, 5], [0.2, 0.3, 0.5])
    items, prior = np.arange(N_ITEMS), np.full(N_ITEMS, 0.1)
    a = policy.score(state, ctx, items, prior, np.random.default_rng(5))
    b = policy.score(restored, ctx, items, prior, np.random.default_rng(5))
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.explore, b.explore)


def test_scores_have_one_entry_per_candidate(policy: Policy[object]) -> None:
    state = _trained(policy)
    s = policy.score(state, SparseContext.of([3], [1.0]), np.array([4, 2, 9]), np.zeros(3), np.random.default_rng(0))
    assert s.mean.shape == s.explore.shape == (3,)
    assert np.isfinite(s.mean).all() and np.isfinite(s.explore).all()


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("context.weights", lambda: SparseContext.of([0, 1], [np.nan, 0.5])),
        ("context.weights", lambda: SparseContext.of([0, 1], [np.inf, 0.5])),
        ("context.indices", lambda: SparseContext.of([-1, 1], [0.5, 0.5])),
        ("context.indices", lambda: SparseContext.of([1, 1], [0.5, 0.5])),
        ("mismatched lengths", lambda: SparseContext.of([0, 1, 2], [0.5, 0.5])),
        ("weights", lambda: Feedback.of([0], [[0, 1]], [[0.5, np.nan]], [0.1], [1.0])),
        ("items", lambda: Feedback.of([-3], [[0, 1]], [[0.5, 0.5]], [0.1], [1.0])),
        ("indices/weights", lambda: Feedback.of([0], [[0, 1]], [[0.5]], [0.1], [1.0])),
        ("reward", lambda: Feedback.of([0], [[0]], [[1.0]], [0.1], [np.inf])),
    ],
)
def test_bad_input_names_the_argument(field: str, call: object) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        call()  # type: ignore[operator]  # parametrised callables are typed as object


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("diag_linucb", {"alpha": -0.1}, "alpha"),
        ("diag_linucb", {"alpha": float("nan")}, "alpha"),
        ("diag_linucb", {"lam": 0.0}, "lam"),
        ("linucb", {"alpha": -1.0}, "alpha"),
        ("diag_ts", {"sigma": -1.0}, "sigma"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("diag_linucb", {"half_life": 0.0}, "half_life"),
        ("diag_linucb", {"beta": 1.0}, "beta"),
        ("ucb1", {}, "policy"),
    ],
)
def test_bad_config_names_the_field(name: str, params: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make_policy(name, **params)


def test_score_rejects_out_of_range_items_and_shape_mismatch(policy: Policy[object]) -> None:
    state = policy.init_state(N_ITEMS, DIM)
    ctx, rng = SparseContext.of([0], [1.0]), np.random.default_rng(0)
    with pytest.raises(ValueError, match="items"):
        policy.score(state, ctx, np.array([N_ITEMS]), np.zeros(1), rng)
    with pytest.raises(ValueError, match="mismatched lengths"):
        policy.score(state, ctx, np.array([0, 1]), np.zeros(3), rng)
    with pytest.raises(ValueError, match=r"context\.indices"):
        policy.score(state, SparseContext.of([DIM], [1.0]), np.array([0]), np.zeros(1), rng)
    with pytest.raises(ValueError, match="prior"):
        policy.score(state, ctx, np.array([0]), np.array([np.nan]), rng)
