"""The implicit-feedback factorisation (offline/factorisation.py) and the rankers' labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from offline.data import Interactions
from offline.factorisation import FactorisationConfig, content_map, factorise, fold_in, solve_side
from offline.job import JobConfig, preference, ranker_rows


def cells(rng: np.random.Generator, n_rows: int, n_cols: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = rng.choice(n_rows * n_cols, n, replace=False)
    return flat // n_cols, flat % n_cols, rng.choice([0.5, 1.0], n)


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_a_half_step_is_the_exact_ridge_solution_of_every_row(alpha: float) -> None:
    rng = np.random.default_rng(1)
    rows, cols, p = cells(rng, 12, 9, 40)
    other = rng.normal(size=(9, 3))
    got = solve_side(rows, cols, p, 12, other, alpha, 0.5)
    for r in range(12):
        dense_p = np.zeros(9)
        c = np.ones(9)
        mine = rows == r
        dense_p[cols[mine]] = p[mine]
        c[cols[mine]] += alpha
        a = (other.T * c) @ other + 0.5 * np.eye(3)
        np.testing.assert_allclose(got[r], np.linalg.solve(a, (other.T * c) @ dense_p), atol=1e-10)


def test_the_batched_path_agrees_with_the_shared_one_as_alpha_vanishes() -> None:
    rng = np.random.default_rng(2)
    rows, cols, p = cells(rng, 30, 20, 150)
    other = rng.normal(size=(20, 4))
    np.testing.assert_allclose(
        solve_side(rows, cols, p, 30, other, 1e-12, 1.0), solve_side(rows, cols, p, 30, other, 0.0, 1.0), atol=1e-9
    )


def test_a_low_rank_matrix_is_reconstructed() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 25))
    users, items = np.nonzero(np.ones_like(truth))
    x, y = factorise(users, items, truth[users, items], 40, 25, FactorisationConfig(dim=2, lam=1e-3))
    assert float(((x @ y.T - truth) ** 2).sum()) < 1e-3 * float((truth**2).sum())


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_alternating_steps_never_raise_the_objective(alpha: float) -> None:
    rng = np.random.default_rng(6)
    users, items, p = cells(rng, 30, 20, 120)
    dense, c = np.zeros((30, 20)), np.ones((30, 20))
    dense[users, items], c[users, items] = p, 1.0 + alpha

    def objective(iterations: int) -> float:
        config = FactorisationConfig(dim=3, alpha=alpha, lam=0.5, iterations=iterations)
        x, y = factorise(users, items, p, 30, 20, config)
        return float((c * (dense - x @ y.T) ** 2).sum() + 0.5 * ((x**2).sum() + (y**2).sum()))

    values = [objective(n) for n in (1, 2, 4, 8)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(values))
    assert values[-1] < values[0]


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_with_an_item_offset_the_factors_fit_what_it_leaves_over(alpha: float) -> None:
    rng = np.random.default_rng(7)
    offset = rng.uniform(0.0, 2.0, 25)
    truth = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 25)) + offset[None, :]
    users, items = np.nonzero(np.ones_like(truth))
    config = FactorisationConfig(dim=2, alpha=alpha, lam=1e-3, iterations=30)
    x, y = factorise(users, items, truth[users, items], 40, 25, config, item_offset=offset)
    assert float(((x @ y.T + offset - truth) ** 2).sum()) < 1e-3 * float((truth**2).sum())
    without, _ = factorise(users, items, truth[users, items], 40, 25, config)
    assert not np.allclose(without, x, atol=1e-3)  # the offset is not a no-op


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_a_half_step_with_an_offset_is_the_exact_ridge_solution_of_every_row(alpha: float) -> None:
    rng = np.random.default_rng(8)
    n_users, n_items = 12, 9
    users, items, p = cells(rng, n_users, n_items, 40)
    offset = rng.uniform(0.0, 0.5, n_items)
    # One iteration: its user half-step is the ridge solution of p − o against the seeded start.
    x, _ = factorise(
        users, items, p, n_users, n_items, FactorisationConfig(dim=3, alpha=alpha, lam=0.5, iterations=1), offset
    )
    y_start = np.random.default_rng(0).normal(0.0, 0.1, (n_items, 3))  # factorise's own seeded start
    for r in range(n_users):
        target, c = -offset.copy(), np.ones(n_items)
        mine = users == r
        target[items[mine]] += p[mine]
        c[items[mine]] += alpha
        a = (y_start.T * c) @ y_start + 0.5 * np.eye(3)
        np.testing.assert_allclose(x[r], np.linalg.solve(a, (y_start.T * c) @ target), atol=1e-10)


def test_the_folded_in_average_user_ranks_items_by_how_often_they_are_chosen() -> None:
    rng = np.random.default_rng(4)
    n_users, n_items = 200, 30
    weight = np.linspace(3.0, 0.1, n_items)  # item 0 chosen most
    users = np.repeat(np.arange(n_users), 6)
    items = np.concatenate([rng.choice(n_items, 6, replace=False, p=weight / weight.sum()) for _ in range(n_users)])
    p = np.ones(len(users))
    _, y = factorise(users, items, p, n_users, n_items, FactorisationConfig(dim=4, lam=1.0))
    x0 = fold_in(np.bincount(items, minlength=n_items) / n_users, y, 1.0)
    counts = np.bincount(items, minlength=n_items)
    top = np.argsort(-(y @ x0))[:5]
    assert set(top.tolist()) <= set(np.argsort(-counts)[:8].tolist())


def test_the_content_map_recovers_a_linear_map_of_the_tokens() -> None:
    rng = np.random.default_rng(5)
    tokens = rng.normal(size=(6, 3))
    bags = [sorted(rng.choice(6, 2, replace=False).tolist()) for _ in range(80)]
    targets = np.array([0.5 + tokens[b].mean(axis=0) for b in bags])
    w, b = content_map(bags, 6, targets, np.arange(80), lam=1e-8)
    fitted = np.array([b + w[bag].mean(axis=0) for bag in bags])
    np.testing.assert_allclose(fitted, targets, atol=1e-5)


def part(shown: bool) -> Interactions:
    n = 6
    return Interactions(
        np.array([f"u{j % 2}" for j in range(n)]),
        np.array([f"i{j}" for j in range(n)]),
        np.arange(n, dtype=np.float64),
        np.array([1.0, 0.0] * 3),
        np.full(n, shown),
    )


def test_impressions_keep_their_real_labels_and_engagements_meet_a_sampled_item() -> None:
    users, items = {"u0": 1, "u1": 2}, {f"i{j}": j for j in range(6)}
    rng = np.random.default_rng(0)
    _, _, y = ranker_rows(part(True), users, items, 6, 0.5, rng)
    assert len(y) == 6 and y.tolist() == [1.0, 0.0] * 3  # real negatives, nothing sampled
    u, i, y = ranker_rows(part(False), users, items, 6, 0.5, rng)
    assert len(y) == 12 and y[:6].tolist() == [1.0, 0.5] * 3 and (y[6:] == 0).all()
    assert ((i[6:] >= 0) & (i[6:] < 6)).all()
    np.testing.assert_array_equal(u[6:], u[:6])  # each engagement's user beside a random item
    assert preference(part(False), JobConfig().disliked_weight).tolist() == [1.0, 0.5] * 3


def test_job_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="retrieval"):
        JobConfig(retrieval="svd")
    with pytest.raises(ValueError, match="disliked_weight"):
        JobConfig(disliked_weight=2.0)
