"""Properties of the Diag statistics (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import (
    Decay,
    DiagLinUCB,
    DiagLinUCBConfig,
    DiagStats,
    Feedback,
    Greedy,
    LinUCB,
    LinUCBConfig,
    SparseContext,
    aggregate,
    diag_scores,
)
from tests.strategies import DIM, N_ITEMS, contexts, feedback_batches

LAM = 1.0


def _one(fb: Feedback, i: int) -> Feedback:
    s = slice(i, i + 1)
    return Feedback(fb.items[s], fb.indices[s], fb.weights[s], fb.prior[s], fb.reward[s], fb.t[s], fb.exam[s])


@given(feedback_batches())
def test_batch_update_equals_sequential_updates(fb: Feedback) -> None:
    pol = DiagLinUCB()
    batched, sequential = pol.init_state(N_ITEMS, DIM), pol.init_state(N_ITEMS, DIM)
    pol.update(batched, fb)
    for i in range(len(fb)):
        pol.update(sequential, _one(fb, i))
    np.testing.assert_allclose(batched.w2, sequential.w2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched.b, sequential.b, rtol=1e-12, atol=1e-12)


@given(feedback_batches(), st.randoms(use_true_random=False))
def test_updates_commute(fb: Feedback, rnd: object) -> None:
    order = np.arange(len(fb))
    rnd.shuffle(order)  # type: ignore[attr-defined]  # hypothesis Random
    shuffled = Feedback(
        fb.items[order],
        fb.indices[order],
        fb.weights[order],
        fb.prior[order],
        fb.reward[order],
        fb.t[order],
        fb.exam[order],
    )
    a, b = aggregate_state(fb), aggregate_state(shuffled)
    np.testing.assert_allclose(a.w2, b.w2, atol=1e-12)
    np.testing.assert_allclose(a.b, b.b, atol=1e-12)


def aggregate_state(fb: Feedback) -> DiagStats:
    state = DiagStats.empty(N_ITEMS, DIM, LAM)
    DiagLinUCB().update(state, fb)
    return state


@given(feedback_batches(max_events=30))
def test_aggregate_matches_a_plain_loop(fb: Feedback) -> None:
    deltas = aggregate(fb.items, fb.indices, fb.weights, fb.reward - fb.prior)
    expected: dict[tuple[int, int], list[float]] = {}
    for j, idx, w, r, p in zip(fb.items, fb.indices, fb.weights, fb.reward, fb.prior, strict=True):
        for f, wf in zip(idx, w, strict=True):
            if wf != 0:
                cell = expected.setdefault((int(j), int(f)), [0.0, 0.0])
                cell[0] += wf * wf
                cell[1] += wf * (r - p)
    got = {
        (int(j), int(f)): (w2, b) for j, f, w2, b in zip(deltas.items, deltas.coords, deltas.w2, deltas.b, strict=True)
    }
    assert set(got) == set(expected)
    for key, (w2, b) in got.items():
        assert np.isclose(w2, expected[key][0]) and np.isclose(b, expected[key][1])


@given(feedback_batches(), contexts())
def test_d_stays_at_least_lambda(fb: Feedback, ctx: tuple[list[int], list[float]]) -> None:
    state = aggregate_state(fb)
    d, _ = state.gather(np.arange(N_ITEMS), np.asarray(ctx[0], dtype=np.int64))
    assert (d >= LAM).all()


@given(feedback_batches(), feedback_batches(), contexts())
def test_bonus_never_grows_with_more_impressions(
    first: Feedback, more: Feedback, ctx: tuple[list[int], list[float]]
) -> None:
    pol = DiagLinUCB(DiagLinUCBConfig(alpha=1.0))
    context = SparseContext.of(*ctx)
    items, prior = np.arange(N_ITEMS), np.zeros(N_ITEMS)
    state = pol.init_state(N_ITEMS, DIM)
    pol.update(state, first)
    s1 = pol.score(state, context, items, prior, np.random.default_rng(0))
    pol.update(state, more)
    s2 = pol.score(state, context, items, prior, np.random.default_rng(0))
    assert ((s2.explore - s2.mean) <= (s1.explore - s1.mean) + 1e-12).all()


@given(feedback_batches(), contexts())
def test_alpha_zero_equals_greedy(fb: Feedback, ctx: tuple[list[int], list[float]]) -> None:
    diag, greedy = DiagLinUCB(DiagLinUCBConfig(alpha=0.0)), Greedy()
    state = diag.init_state(N_ITEMS, DIM)
    diag.update(state, fb)
    context, items, prior = SparseContext.of(*ctx), np.arange(N_ITEMS), np.linspace(0, 1, N_ITEMS)
    a = diag.score(state, context, items, prior, np.random.default_rng(0))
    b = greedy.score(state, context, items, prior, np.random.default_rng(0))
    np.testing.assert_array_equal(a.explore, b.explore)
    np.testing.assert_array_equal(a.mean, b.mean)


def test_diag_scores_match_the_formula() -> None:
    rng = np.random.default_rng(0)
    p, w = rng.random(7), rng.random(3)
    d, b = 1 + rng.random((7, 3)), rng.standard_normal((7, 3))
    mean, bonus = diag_scores(p, w, d, b, alpha=0.7)
    for j in range(7):
        assert np.isclose(mean[j], p[j] + sum(w[f] * b[j, f] / d[j, f] for f in range(3)))
        assert np.isclose(bonus[j], 0.7 * np.sqrt(sum(w[f] ** 2 / d[j, f] for f in range(3))))


def test_new_item_starts_at_its_prior_with_the_largest_bonus() -> None:
    pol = DiagLinUCB(DiagLinUCBConfig(alpha=1.0))
    state = pol.init_state(3, 2)
    pol.update(state, Feedback.of([0, 1], [[0, 1], [0, 1]], [[0.6, 0.4]] * 2, [0.2, 0.2], [1.0, 0.0]))
    s = pol.score(
        state, SparseContext.of([0, 1], [0.6, 0.4]), np.arange(3), np.array([0.2, 0.2, 0.3]), np.random.default_rng(0)
    )
    assert s.mean[2] == 0.3
    bonus = s.explore - s.mean
    assert bonus[2] > bonus[0] and bonus[2] > bonus[1]


def test_forgetting_halves_old_evidence_after_one_half_life() -> None:
    decay = Decay(half_life=10.0, epoch=0.0)
    state = DiagStats.empty(1, 1, lam=1.0, decay=decay)
    state.apply(aggregate([0], [[0]], [[1.0]], [0.5], t=[5.0], decay=decay))
    d_now, b_now = state.gather(np.array([0]), np.array([0]), now=5.0)
    d_later, b_later = state.gather(np.array([0]), np.array([0]), now=15.0)
    assert np.isclose(d_now[0, 0], 2.0) and np.isclose(b_now[0, 0], 0.5)
    assert np.isclose(d_later[0, 0], 1.5) and np.isclose(b_later[0, 0], 0.25)


@settings(max_examples=30)
@given(feedback_batches(max_events=12))
def test_full_linucb_matches_the_explicit_inverse(fb: Feedback) -> None:
    pol = LinUCB(LinUCBConfig(alpha=1.0, lam=LAM))
    state = pol.init_state(N_ITEMS, DIM)
    pol.update(state, fb)
    for j in range(N_ITEMS):
        a = LAM * np.eye(DIM)
        for idx, w in zip(fb.indices[fb.items == j], fb.weights[fb.items == j], strict=True):
            x = np.zeros(DIM)
            x[idx] = w
            a += np.outer(x, x)
        np.testing.assert_allclose(state.a_inv[j], np.linalg.inv(a), atol=1e-8)


def test_diag_equals_full_linucb_on_one_hot_contexts() -> None:
    # With one active coordinate per context, A is diagonal and the approximation is exact.
    rng = np.random.default_rng(4)
    n = 200
    fb = Feedback.of(
        rng.integers(0, N_ITEMS, n),
        rng.integers(0, DIM, (n, 1)),
        np.ones((n, 1)),
        rng.random(n) * 0.2,
        (rng.random(n) < 0.3).astype(float),
    )
    diag, full = DiagLinUCB(DiagLinUCBConfig(alpha=0.5)), LinUCB(LinUCBConfig(alpha=0.5))
    s_diag, s_full = diag.init_state(N_ITEMS, DIM), full.init_state(N_ITEMS, DIM)
    diag.update(s_diag, fb)
    full.update(s_full, fb)
    ctx, items, prior = SparseContext.of([2], [1.0]), np.arange(N_ITEMS), np.full(N_ITEMS, 0.1)
    a = diag.score(s_diag, ctx, items, prior, np.random.default_rng(0))
    b = full.score(s_full, ctx, items, prior, np.random.default_rng(0))
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-10)
    np.testing.assert_allclose(a.explore, b.explore, atol=1e-10)
