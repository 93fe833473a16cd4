"""The examination curve from randomised slates (bandits/position.py): the smooth family's fit,
a fold it must not flatten, and the error after 10,000 requests on simulated traffic."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.position import examination_curve, examination_fit, examination_prior

K = 10
POWER = (1.0 + np.arange(K)) ** -0.7  # the synthetic world's curve (WorldConfig.position_bias)


def randomised(true: np.ndarray, slates: int, top_ctr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Impressions and clicks per position of ``slates`` randomised slates: items' top-slot click
    rates drawn around ``top_ctr`` and placed in random order, clicked with rate × examination."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 2.0 / top_ctr - 2.0, size=(slates, len(true)))
    clicks = (rng.random((slates, len(true))) < p * true).sum(axis=0).astype(np.float64)
    return np.full(len(true), float(slates)), clicks


@pytest.mark.parametrize("true", [POWER, examination_prior(K), (1.0 + 3.0 * np.arange(K)) ** -0.3])
def test_the_family_recovers_smooth_curves_from_plentiful_data(true: np.ndarray) -> None:
    n = np.full(K, 1e6)
    curve, r, _ = examination_fit(n, n * 0.25 * true)
    assert np.abs(curve - true).max() < 0.015 and r == pytest.approx(0.25, rel=0.02)  # grid and family: 0.0104 at worst
    assert np.abs(examination_curve(n, n * 0.25 * true, examination_prior(K)) - true).max() < 0.01


def test_a_fold_that_no_smooth_curve_follows_is_kept() -> None:
    fold = np.array([1.0, 0.95, 0.9, 0.4, 0.38, 0.36, 0.35, 0.34, 0.33, 0.32])
    n = np.full(K, 200_000.0)
    _, _, deviance = examination_fit(n, n * 0.2 * fold)
    assert deviance > 100  # the family is rejected
    assert np.abs(examination_curve(n, n * 0.2 * fold, examination_prior(K)) - fold).max() < 0.01


def test_no_randomised_slate_yet_gives_the_prior() -> None:
    prior = examination_prior(K)
    assert examination_curve(np.zeros(K), np.zeros(K), prior).tolist() == pytest.approx(prior.tolist())


def test_within_005_of_the_true_curve_after_10000_requests() -> None:
    """10,000 requests of 10 slots, a top-slot click rate of 0.3, over 100 seeds. At 20% of
    requests randomised (2,000 slates) the largest error at any position is within 0.05 in at
    least 85% of runs (measured 92%); at the default 5% (500 slates) the median is within 0.05
    (measured 0.036; the per-position ratio this replaced had 0.066): what the issue asks of
    every run needs about 2,000 randomised slates, or more traffic."""
    prior = examination_prior(K)

    def errors(slates: int) -> np.ndarray:
        return np.array(
            [
                np.abs(examination_curve(*randomised(POWER, slates, 0.3, seed), prior) - POWER).max()
                for seed in range(100)
            ]
        )

    assert np.mean(errors(2000) <= 0.05) >= 0.85
    assert np.median(errors(500)) <= 0.05
