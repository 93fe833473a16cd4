from __future__ import annotations

import numpy as np
import pytest

from offline.clusters import assign_clusters, candidate_graph, fresh_pool, minibatch_kmeans
from offline.sampling import FrequencyEstimator


def test_frequency_estimate_converges_on_a_known_stream() -> None:
    rng = np.random.default_rng(0)
    truth = np.array([0.5, 0.2, 0.05, 0.01])
    est = FrequencyEstimator(n_buckets=64, alpha=0.02)
    for _ in range(20_000):
        est.update(np.flatnonzero(rng.random(4) < truth))
    np.testing.assert_allclose(est.probability(np.arange(4)), truth, rtol=0.25)
    assert est.probability(np.array([40]))[0] == pytest.approx(1 / 20_000)  # never seen


@pytest.mark.parametrize(
    ("field", "kwargs"), [("n_buckets", {"n_buckets": 0}), ("alpha", {"n_buckets": 4, "alpha": 0.0})]
)
def test_frequency_estimator_validates(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        FrequencyEstimator(**kwargs)  # type: ignore[arg-type]  # parametrised kwargs


def test_kmeans_recovers_separable_clusters() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, (6, 8))
    labels = rng.integers(0, 6, 3000)
    x = centres[labels] + rng.normal(0, 0.3, (3000, 8))
    found = minibatch_kmeans(x, 6, seed=0)
    assign = assign_clusters(x, found)
    # Every true cluster maps to exactly one found cluster (a pure, complete partition).
    pairs = {(int(t), int(f)) for t, f in zip(labels, assign, strict=True)}
    assert len(pairs) == 6 and len({f for _, f in pairs}) == 6


def test_kmeans_validates() -> None:
    with pytest.raises(ValueError, match="k"):
        minibatch_kmeans(np.zeros((3, 2)), 5)
    with pytest.raises(ValueError, match="x"):
        minibatch_kmeans(np.array([[np.nan, 0.0]]), 1)


def test_candidate_graph_and_fresh_pool() -> None:
    rng = np.random.default_rng(1)
    items = rng.normal(size=(50, 4))
    cents = rng.normal(size=(3, 4))
    graph = candidate_graph(cents, items, 5)
    assert graph.shape == (3, 5)
    for c in range(3):
        np.testing.assert_array_equal(graph[c], np.argsort(-(items @ cents[c]))[:5])
    pool = fresh_pool(
        np.array([0.0, 90.0, np.nan, 10.0]), np.array([100, 100, 100, 3]), now=100.0, max_age_s=20, max_impressions=50
    )
    assert pool.tolist() == [1, 3]
