"""The pooled residual (bandits/pooled.py) and examination-weighted updates: properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandits import DiagLinUCB, DiagLinUCBConfig, DiagStats, DiagThompson, DiagThompsonConfig, Feedback, SparseContext
from bandits.pooled import pooled_scores
from tests.strategies import DIM, N_ITEMS, feedback_batches

POOLED = DiagLinUCB(DiagLinUCBConfig(alpha=1.0, lam_pool=4.0))
CLUSTERS = DIM - 1  # the last coordinate is the pool


def state_after(policy: DiagLinUCB, *batches: Feedback) -> DiagStats:
    state = policy.init_state(N_ITEMS, DIM)
    for fb in batches:
        policy.update(state, fb)
    return state


@given(feedback_batches(dim=CLUSTERS, with_exam=True), st.randoms(use_true_random=False))
def test_pooled_updates_commute_and_batch(fb: Feedback, rnd: object) -> None:
    order = np.arange(len(fb))
    rnd.shuffle(order)  # type: ignore[attr-defined]  # hypothesis Random
    shuffled = Feedback(
        fb.items[order], fb.indices[order], fb.weights[order], fb.prior[order], fb.reward[order], fb.t[order],
        fb.exam[order],
    )  # fmt: skip
    one_by_one = POOLED.init_state(N_ITEMS, DIM)
    for i in range(len(fb)):
        s = slice(i, i + 1)
        POOLED.update(
            one_by_one, Feedback(fb.items[s], fb.indices[s], fb.weights[s], fb.prior[s], fb.reward[s], fb.t[s],
                                 fb.exam[s])
        )  # fmt: skip
    batched, reordered = state_after(POOLED, fb), state_after(POOLED, shuffled)
    for other in (reordered, one_by_one):
        np.testing.assert_allclose(batched.w2, other.w2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(batched.b, other.b, rtol=1e-12, atol=1e-12)


@given(feedback_batches(dim=CLUSTERS, with_exam=True))
def test_the_pool_coordinate_sums_every_impression_once(fb: Feedback) -> None:
    state = state_after(POOLED, fb)
    for j in range(N_ITEMS):
        mine = fb.items == j
        e = fb.exam[mine]
        assert np.isclose(state.w2[j, -1], float((e * e).sum()), atol=1e-12)
        want_b = float((e * (fb.reward[mine] - e * fb.prior[mine])).sum())
        assert np.isclose(state.b[j, -1], want_b, atol=1e-12)


@given(
    n=st.integers(1, 500),
    residual=st.floats(-0.9, 0.9, allow_nan=False),
    lam_pool=st.floats(0.1, 50.0),
    seen=st.integers(0, CLUSTERS - 1),
    asked=st.integers(0, CLUSTERS - 1),
)
def test_a_residual_is_never_counted_twice(n: int, residual: float, lam_pool: float, seen: int, asked: int) -> None:
    # An item seen n times by users of one cluster, every time off its prior by `residual`:
    # for users of any cluster its learnt residual has that sign and never exceeds it (adding
    # the item-level estimate to the per-cluster one would come close to twice as much).
    policy = DiagLinUCB(DiagLinUCBConfig(alpha=0.0, lam_pool=lam_pool))
    prior = 0.05
    fb = Feedback.of([0] * n, [[seen]] * n, [[1.0]] * n, [prior] * n, [prior + residual] * n)
    state = state_after(policy, fb)
    rng = np.random.default_rng(0)
    mean = policy.score(state, SparseContext.of([asked], [1.0]), np.array([0]), np.array([prior]), rng).mean[0]
    learnt = mean - prior
    assert abs(learnt) <= abs(residual) + 1e-12
    assert learnt * residual >= 0.0
    if asked == seen:  # its own cluster knows more than the others
        other = (seen + 1) % CLUSTERS
        elsewhere = policy.score(state, SparseContext.of([other], [1.0]), np.array([0]), np.array([prior]), rng)
        assert abs(learnt) >= abs(elsewhere.mean[0] - prior) - 1e-12


@given(feedback_batches(dim=CLUSTERS, with_exam=True), feedback_batches(dim=CLUSTERS, with_exam=True))
def test_the_pooled_bonus_never_grows_with_more_data(first: Feedback, more: Feedback) -> None:
    ctx = SparseContext.of([0, 2], [0.7, 0.3])
    items, prior = np.arange(N_ITEMS), np.full(N_ITEMS, 0.1)
    rng = np.random.default_rng(0)

    def bonus(state: DiagStats) -> np.ndarray:
        s = POOLED.score(state, ctx, items, prior, rng)
        return np.asarray(s.explore - s.mean)

    before, after = bonus(state_after(POOLED, first)), bonus(state_after(POOLED, first, more))
    assert (after <= before + 1e-12).all()


def test_bad_news_reaches_every_cluster_through_the_pool() -> None:
    # Plain Diag learns nothing for cluster 1 from cluster 0's impressions; the pool does.
    fb = Feedback.of([0] * 50, [[0]] * 50, [[1.0]] * 50, [0.3] * 50, [0.0] * 50)
    ctx, items, prior = SparseContext.of([1], [1.0]), np.array([0, 1]), np.array([0.3, 0.3])
    rng = np.random.default_rng(0)
    plain = DiagLinUCB(DiagLinUCBConfig(alpha=0.0))
    assert plain.score(state_after(plain, fb), ctx, items, prior, rng).mean[0] == 0.3
    pooled = POOLED.score(state_after(POOLED, fb), ctx, items, prior, rng)
    assert pooled.mean[0] < 0.05 and pooled.mean[1] == 0.3


def test_examination_weighting_learns_the_item_not_its_slot() -> None:
    # Two equal items (top-slot click rate 0.2); one always shown at the top (e = 1), one at a
    # slot examined a quarter of the time. Unweighted updates rank the top one far above;
    # examination-weighted ones learn that they are the same.
    rng = np.random.default_rng(3)
    n, p_true, prior = 4000, 0.2, 0.1
    top = rng.random(n) < p_true
    low = rng.random(n) < p_true * 0.25
    policy = DiagLinUCB(DiagLinUCBConfig(alpha=0.0, lam_pool=4.0))
    ctx, items, priors = SparseContext.of([0], [1.0]), np.array([0, 1]), np.full(2, prior)

    def learnt(exam: list[float]) -> np.ndarray:
        fb = Feedback.of([0] * n + [1] * n, [[0]] * 2 * n, [[1.0]] * 2 * n, [prior] * 2 * n,
                         np.concatenate([top, low]).astype(float), exam=[exam[0]] * n + [exam[1]] * n)  # fmt: skip
        return policy.score(state_after(policy, fb), ctx, items, priors, rng).mean

    ignored, weighted = learnt([1.0, 1.0]), learnt([1.0, 0.25])
    assert ignored[0] - ignored[1] > 0.1
    assert abs(weighted[0] - weighted[1]) < 0.03 and abs(weighted[0] - p_true) < 0.03


def test_pooled_thompson_is_seeded_and_centred_on_the_mean() -> None:
    policy = DiagThompson(DiagThompsonConfig(sigma=0.5, lam_pool=4.0))
    fb = Feedback.of([0] * 30, [[0]] * 30, [[1.0]] * 30, [0.2] * 30, [1.0] * 30)
    state = policy.init_state(2, 3)
    policy.update(state, fb)
    ctx, items, prior = SparseContext.of([1], [1.0]), np.array([0, 1]), np.array([0.2, 0.2])
    a = policy.score(state, ctx, items, prior, np.random.default_rng(5))
    b = policy.score(state, ctx, items, prior, np.random.default_rng(5))
    assert (a.explore == b.explore).all()
    draws = np.array([policy.score(state, ctx, items, prior, np.random.default_rng(s)).explore for s in range(400)])
    assert abs(draws[:, 0].mean() - a.mean[0]) < 0.05


def test_pooled_scores_validates_shapes() -> None:
    with pytest.raises(ValueError, match="w2/b"):
        pooled_scores([0.1], [1.0], [[0.0, 0.0]], [[0.0]], [0.0], [0.0], 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="lam_pool"):
        pooled_scores([0.1], [1.0], [[0.0]], [[0.0]], [0.0], [0.0], 1.0, 0.0, 1.0)


def test_a_cold_item_has_the_wider_bonus_and_learns_from_fewer_clicks() -> None:
    # Items 0 and 1 have the same prior and the same feedback (two impressions, one click); item
    # 0's prior rests on features only (lam0 0.1), item 1's on plenty of data (lam 1). Unseen,
    # the cold one has the wider bonus; after the click its residual has moved further.
    policy = DiagLinUCB(DiagLinUCBConfig(alpha=1.0, lam_pool=4.0))
    ctx, items, prior = SparseContext.of([0], [1.0]), np.array([0, 1]), np.array([0.05, 0.05])
    rng = np.random.default_rng(0)
    state = policy.init_state(2, 2)
    state.lam0 = np.array([0.1, 1.0])
    unseen = policy.score(state, ctx, items, prior, rng)
    assert unseen.explore[0] - unseen.mean[0] > 2 * (unseen.explore[1] - unseen.mean[1])
    policy.update(state, Feedback.of([0, 0, 1, 1], [[0]] * 4, [[1.0]] * 4, [0.05] * 4, [1.0, 0.0, 1.0, 0.0]))
    seen = policy.score(state, ctx, items, prior, rng)
    assert seen.mean[0] > seen.mean[1] > 0.05
    # Without lam0 every item has the process's lam: the two are the same again.
    state.lam0 = None
    same = policy.score(state, ctx, items, prior, rng)
    assert same.mean[0] == pytest.approx(same.mean[1]) and same.explore[0] == pytest.approx(same.explore[1])
