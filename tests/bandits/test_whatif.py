"""The what-if estimator against simulated logs whose answer is known.

Explore slates click 0.3 per request on average and greedy ones 0.5 (four slots, binomial, so a
request can have several clicks and c² ≠ c); logged at p, the true clicks per request at q are
q·0.3 + (1 − q)·0.5. Many seeds come from one seeded generator: no test is left to chance.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandits.checks import FloatArray
from bandits.whatif import EXPLORE, GREEDY, CoinSums, coin_sums, what_if

QS = np.array([0.0, 0.1, 0.2, 0.35, 0.5, 1.0])
MEAN_EXPLORE, MEAN_GREEDY, SLOTS = 0.3, 0.5, 4


def truth(q: FloatArray) -> FloatArray:
    return q * MEAN_EXPLORE + (1 - q) * MEAN_GREEDY


def logs(rng: np.random.Generator, seeds: int, n: int, p: FloatArray) -> tuple[np.ndarray, FloatArray]:
    """(seeds, n) coin outcomes and clicks per request, each row one simulated log."""
    explore = rng.random((seeds, n)) < p
    clicks = rng.binomial(SLOTS, np.where(explore, MEAN_EXPLORE, MEAN_GREEDY) / SLOTS).astype(np.float64)
    return explore, clicks


def covered(low: FloatArray, high: FloatArray, value: FloatArray) -> np.ndarray:
    return (low <= value) & (value <= high)


def test_estimates_lie_within_their_intervals_of_the_truth_in_most_seeds() -> None:
    explore, clicks = logs(np.random.default_rng(0), 200, 3000, np.full(3000, 0.2))
    hits_snips, hits_ips = np.zeros(len(QS)), np.zeros(len(QS))
    for x, c in zip(explore, clicks, strict=True):
        est = what_if(coin_sums(x, np.full(len(x), 0.2), c), QS)
        assert est.estimable.all() and est.requests == 3000
        hits_snips += covered(est.snips_low, est.snips_high, truth(QS))
        hits_ips += covered(est.ips_low, est.ips_high, truth(QS))
    assert (hits_snips / 200 >= 0.9).all(), hits_snips / 200
    assert (hits_ips / 200 >= 0.9).all(), hits_ips / 200


def test_interval_coverage_is_near_95_percent_and_needs_the_squared_clicks() -> None:
    """Over 1000 logs each interval covers the truth 92-97.5% of the time: neither too narrow
    nor padded. With Σ c² understated as Σ c (what ignoring several clicks on one request
    would give), SNIPS's interval covers clearly less: the live counters keep c² exactly."""
    seeds, n, p = 1000, 2000, 0.2
    explore, clicks = logs(np.random.default_rng(1), seeds, n, np.full(n, p))
    hits = {"ips": np.zeros(len(QS)), "snips": np.zeros(len(QS)), "snips_without_c2": np.zeros(len(QS))}
    for x, c in zip(explore, clicks, strict=True):
        est = what_if(coin_sums(x, np.full(n, p), c), QS)
        hits["ips"] += covered(est.ips_low, est.ips_high, truth(QS))
        hits["snips"] += covered(est.snips_low, est.snips_high, truth(QS))
        low = what_if(coin_sums(x, np.full(n, p), c, clicks_sq=c), QS)
        hits["snips_without_c2"] += covered(low.snips_low, low.snips_high, truth(QS))
    rate = {k: v / seeds for k, v in hits.items()}
    assert ((rate["ips"] >= 0.92) & (rate["ips"] <= 0.975)).all(), rate
    assert ((rate["snips"] >= 0.92) & (rate["snips"] <= 0.975)).all(), rate
    assert rate["snips_without_c2"].mean() < 0.91, rate


def test_snips_equals_ips_when_the_weights_sum_to_n() -> None:
    # Exactly p·N explore coins: Σ w = q·N + (1 − q)·N = N at every q.
    rng = np.random.default_rng(2)
    n, p = 1000, 0.2
    explore = rng.permutation(np.arange(n) < int(p * n))
    clicks = rng.binomial(SLOTS, 0.1, n).astype(np.float64)
    est = what_if(coin_sums(explore, np.full(n, p), clicks), QS)
    np.testing.assert_allclose(est.snips, est.ips, rtol=1e-12)
    # At q = p every weight is 1: both are the plain mean with the textbook interval.
    at_p = what_if(coin_sums(explore, np.full(n, p), clicks), [p])
    mean, half = clicks.mean(), 1.959963984540054 * clicks.std(ddof=1) / np.sqrt(n)
    for low, mid, high in ((at_p.ips_low, at_p.ips, at_p.ips_high), (at_p.snips_low, at_p.snips, at_p.snips_high)):
        np.testing.assert_allclose([low[0], mid[0], high[0]], [mean - half, mean, mean + half])


def test_grouped_and_split_sums_equal_the_per_request_sums() -> None:
    """What a live counter keeps (per coin side and p: requests, Σ c, Σ c², summed over minutes)
    gives the same sums as the per-request log."""
    rng = np.random.default_rng(3)
    n = 500
    p = rng.choice([0.05, 0.2, 0.5], n)
    explore, clicks = logs(rng, 1, n, p)
    explore, clicks = explore[0], clicks[0]
    whole = coin_sums(explore, p, clicks)
    keys = sorted({(bool(x), float(q)) for x, q in zip(explore, p, strict=True)})
    groups = [(explore == x) & (p == q) for x, q in keys]
    grouped = coin_sums(
        np.array([x for x, _ in keys]),
        np.array([q for _, q in keys]),
        np.array([clicks[g].sum() for g in groups]),
        count=np.array([g.sum() for g in groups]),
        clicks_sq=np.array([(clicks[g] ** 2).sum() for g in groups]),
    )
    split = coin_sums(explore[:200], p[:200], clicks[:200]) + coin_sums(explore[200:], p[200:], clicks[200:])
    for other in (grouped, split):
        for name in CoinSums.__dataclass_fields__:
            np.testing.assert_allclose(getattr(other, name), getattr(whole, name), rtol=1e-12, err_msg=name)


def test_a_slider_moved_during_the_window_is_weighted_per_request() -> None:
    """The operator moved explore_traffic from 0.1 to 0.4 half-way, and clicks drifted too (the
    model learnt): the truth at q is the mean over requests of q·μ_explore + (1 − q)·μ_greedy.
    Per-request p is unbiased; one p for the whole window is visibly not."""
    seeds, n = 400, 4000
    late = np.arange(n) >= n // 2
    p = np.where(late, 0.4, 0.1)
    mean_x, mean_g = np.where(late, 0.2, 0.3), np.where(late, 0.6, 0.5)
    rng = np.random.default_rng(4)
    explore = rng.random((seeds, n)) < p
    clicks = rng.binomial(SLOTS, np.where(explore, mean_x, mean_g) / SLOTS).astype(np.float64)
    qs = np.array([0.0, 0.25, 0.5, 1.0])
    true = np.array([np.mean(q * mean_x + (1 - q) * mean_g) for q in qs])
    ours, pooled, hits = [], [], np.zeros(len(qs))
    for x, c in zip(explore, clicks, strict=True):
        est = what_if(coin_sums(x, p, c), qs)
        ours.append(est.snips)
        hits += covered(est.snips_low, est.snips_high, true)
        pooled.append(what_if(coin_sums(x, np.full(n, p.mean()), c), qs).snips)
    bias, pooled_bias = np.mean(ours, axis=0) - true, np.mean(pooled, axis=0) - true
    assert (np.abs(bias) < 0.005).all(), bias
    assert (np.abs(pooled_bias) > 0.009).all(), pooled_bias  # what the test would catch
    assert (hits / seeds >= 0.92).all(), hits / seeds


def test_a_q_without_support_is_not_estimable_never_a_number() -> None:
    rng = np.random.default_rng(5)
    n = 400
    greedy_only = np.zeros(n, dtype=bool)  # served at explore_traffic 0: the coin never explored
    est = what_if(coin_sums(greedy_only, np.zeros(n), rng.binomial(1, 0.5, n).astype(float)), [0.0, 0.05, 1.0])
    assert est.estimable.tolist() == [True, False, False]
    assert np.isfinite(est.snips[0]) and np.isnan(est.snips[1:]).all() and np.isnan(est.ips_high[1:]).all()
    assert "explore_traffic 0" in (est.reasons[1] or "")

    always = what_if(coin_sums(np.ones(n, dtype=bool), np.ones(n), np.ones(n)), [0.5, 1.0])
    assert always.estimable.tolist() == [False, True] and "explore_traffic 1" in (always.reasons[0] or "")

    # One request at p = 0 spoils every q > 0 of the window, however many others explored.
    x, c = logs(rng, 1, n, np.full(n, 0.3))
    mixed = coin_sums(np.append(x[0], False), np.append(np.full(n, 0.3), 0.0), np.append(c[0], 0.0))
    assert what_if(mixed, [0.0, 0.3]).estimable.tolist() == [True, False]

    # p > 0 but no coin came up explore yet: nothing to say about exploring.
    none_yet = what_if(coin_sums(np.zeros(50, dtype=bool), np.full(50, 0.01), np.ones(50)), [0.0, 0.01])
    assert none_yet.estimable.tolist() == [True, False] and "explored" in (none_yet.reasons[1] or "")
    assert not what_if(CoinSums.empty(), [0.1]).estimable.any()


def test_degraded_requests_are_left_out() -> None:
    rng = np.random.default_rng(6)
    x, c = logs(rng, 1, 300, np.full(300, 0.25))
    base = what_if(coin_sums(x[0], np.full(300, 0.25), c[0]), QS)
    # Degraded responses (explore_p = -1: no coin) with any clicks change nothing.
    with_degraded = coin_sums(np.append(x[0], [False, False]), np.append(np.full(300, 0.25), [-1.0, -1.0]),
                              np.append(c[0], [4.0, 4.0]))  # fmt: skip
    again = what_if(with_degraded, QS)
    np.testing.assert_array_equal(again.snips, base.snips)
    assert again.requests == 300
    assert with_degraded.n[EXPLORE] + with_degraded.n[GREEDY] == 300


@pytest.mark.parametrize(
    ("explore", "p", "message"),
    [([True], [0.0], "p = 0 came up explore"), ([False], [1.0], "p = 0 came up explore"), ([True], [1.5], "[0, 1]")],
)
def test_impossible_logs_are_refused(explore: list[bool], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        coin_sums(np.array(explore), np.array(p), np.array([1.0]))
