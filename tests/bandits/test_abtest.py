"""The experiment's intervals (bandits/abtest.py): they cover the truth about 95% of the time on
simulated arms with a known answer, and the lift's sign and verdict follow the data."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bandits.abtest import MIN_REQUESTS, ArmSums, clicks_per_request, lift


def sums(clicks: np.ndarray) -> ArmSums:
    return ArmSums(float(len(clicks)), float(clicks.sum()), float((clicks * clicks).sum()))


def test_the_intervals_cover_the_true_values_about_95_percent_of_the_time() -> None:
    """Clicks per request drawn as the sum of 4 slots' Bernoulli clicks, as a slate's are:
    1000 seeded experiments of 400 and 1600 requests, true means 0.6 and 0.72 (lift +20%)."""
    rng = np.random.default_rng(5)
    p_control, p_arm = np.array([0.3, 0.15, 0.1, 0.05]), np.array([0.36, 0.18, 0.12, 0.06])
    true_c, true_a = p_control.sum(), p_arm.sum()
    mean_cover = diff_cover = lift_cover = significant = 0
    runs = 1000
    for _ in range(runs):
        c = (rng.random((400, 4)) < p_control).sum(axis=1).astype(float)
        a = (rng.random((1600, 4)) < p_arm).sum(axis=1).astype(float)
        e = clicks_per_request(sums(c))
        mean_cover += e.low <= true_c <= e.high
        x = lift(sums(a), sums(c))
        diff_cover += x.diff_low <= true_a - true_c <= x.diff_high
        lift_cover += x.lift_low <= true_a / true_c - 1 <= x.lift_high
        significant += x.significant
    for name, covered in (("mean", mean_cover), ("diff", diff_cover), ("lift", lift_cover)):
        assert 0.93 <= covered / runs <= 0.97, (name, covered)
    assert significant / runs > 0.5  # the power at this size: far above the 5% of no effect


def test_no_effect_is_called_significant_about_5_percent_of_the_time() -> None:
    rng = np.random.default_rng(6)
    p = np.array([0.3, 0.15, 0.1, 0.05])
    calls = sum(
        lift(
            sums((rng.random((800, 4)) < p).sum(axis=1).astype(float)),
            sums((rng.random((800, 4)) < p).sum(axis=1).astype(float)),
        ).significant
        for _ in range(1000)
    )
    assert 0.03 <= calls / 1000 <= 0.07, calls


@given(
    st.integers(MIN_REQUESTS, 5000),
    st.integers(MIN_REQUESTS, 5000),
    st.floats(0.0, 3.0),
    st.floats(0.0, 3.0),
)
def test_the_verdict_follows_the_interval_and_the_sign(n_a: int, n_c: int, m_a: float, m_c: float) -> None:
    # Sums of requests with clicks 0..4 whose means are m_a and m_c (variance of a two-point mix).
    a = ArmSums(n_a, m_a * n_a, m_a * 4 * n_a)
    c = ArmSums(n_c, m_c * n_c, m_c * 4 * n_c)
    x = lift(a, c, "arm", "control")
    assert x.diff_low <= x.diff <= x.diff_high
    assert x.significant == (x.diff_low > 0 or x.diff_high < 0)
    assert x.verdict.startswith("arm ") and x.verdict.endswith("significant" if x.significant else "spans 0")
    if m_c > 1e-6 and m_a > 1e-6:  # else the ratio is not finite and the verdict gives the difference
        assert math.isclose(x.lift, m_a / m_c - 1, rel_tol=1e-9, abs_tol=1e-12)
        if abs(m_a / m_c - 1) >= 1e-3:
            assert ("more" in x.verdict) == (m_a > m_c) and ("fewer" in x.verdict) == (m_a < m_c)
        elif abs(m_a / m_c - 1) < 1e-4:  # equal up to round-off: neither word
            assert "as many clicks per request as control" in x.verdict


def test_too_few_requests_give_no_interval_and_say_so() -> None:
    x = lift(ArmSums(10, 5, 5), ArmSums(500, 200, 300))
    assert not x.significant and math.isnan(x.diff_low) and "too few" in x.verdict
    e = clicks_per_request(ArmSums(0, 0, 0))
    assert math.isnan(e.mean) and e.n == 0


def test_an_arm_without_a_click_still_gets_an_interval() -> None:
    x = lift(ArmSums(100, 0, 0), ArmSums(100, 20, 30))
    assert x.lift == -1.0 and math.isfinite(x.lift_low) and math.isfinite(x.lift_high)
    assert x.significant and "nan" not in x.verdict
