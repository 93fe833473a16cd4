from __future__ import annotations

import numpy as np
import pytest

from offline.clusters import (
    GraphRecall,
    assign_clusters,
    candidate_graph,
    choose_width,
    fresh_pool,
    graph_recall,
    minibatch_kmeans,
)
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


def test_graph_recall_matches_exact_retrieval_when_each_cluster_row_holds_its_users_best() -> None:
    # Two clusters of users with disjoint tastes: a row of each cluster's own best items is
    # exactly its users' top-n, so the graph recalls what exact retrieval does; a graph whose
    # rows were swapped recalls nothing.
    rng = np.random.default_rng(0)
    centroids = np.eye(2)
    users = np.vstack([np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))]) + rng.normal(0, 0.01, (10, 2))
    item_emb = np.vstack([np.tile([1.0, 0.0], (10, 1)) * np.linspace(1, 0.5, 10)[:, None],
                          np.tile([0.0, 1.0], (10, 1)) * np.linspace(1, 0.5, 10)[:, None]])  # fmt: skip
    scores = users @ item_emb.T
    graph = candidate_graph(centroids, item_emb, 10)
    relevant = [{0, 1, 2}] * 5 + [{10, 11, 12}] * 5
    seen: list[set[int]] = [set()] * 10
    good = graph_recall(graph, centroids, 1, users, scores, relevant, seen, [3, 10])
    assert [(r.recall, r.exact, r.candidates) for r in good] == [(1.0, 1.0, 3.0), (1.0, 1.0, 10.0)]
    swapped = graph_recall(graph[::-1], centroids, 1, users, scores, relevant, seen, [3])
    assert swapped[0].recall == 0.0 and swapped[0].exact == 1.0 and swapped[0].ratio == 0.0
    # A seen item is never a hit; serving scores it all the same, so it is a candidate, but the
    # exact top-n it is set against is of the unseen ones (n = 2 here).
    seen_first = graph_recall(graph, centroids, 1, users, scores, relevant, [{0}] * 5 + [{10}] * 5, [3])
    assert seen_first[0].candidates == 3.0
    assert seen_first[0].recall == pytest.approx(2 / 3) and seen_first[0].exact == pytest.approx(2 / 3)


def test_the_width_is_the_narrowest_that_matches_exact_recall_within_the_candidate_range() -> None:
    rs = [GraphRecall(50, 0.20, 0.30, 150.0), GraphRecall(100, 0.38, 0.40, 300.0), GraphRecall(150, 0.5, 0.5, 450.0),
          GraphRecall(200, 0.54, 0.6, 480.0), GraphRecall(300, 0.7, 0.7, 900.0)]  # fmt: skip
    assert choose_width(rs, 0.95, 200, 500).width == 100  # 0.95 of exact at 300 candidates
    assert choose_width(rs, 0.99, 200, 500).width == 150  # only 150 reaches it in range
    assert choose_width(rs, 0.99, 200, 400).width == 100  # none within 400: the best ratio there
    assert choose_width(rs, 0.99, 10, 100).width == 50  # none in range: the nearest to it
    assert choose_width(rs, 0.99, 1000, 2000).width == 300
    # Within tolerance of the best ratio, the narrowest: 0.95 at 300 candidates against 0.96.
    close = [GraphRecall(100, 0.38, 0.40, 300.0), GraphRecall(200, 0.48, 0.50, 480.0)]
    assert choose_width(close, 0.99, 200, 500).width == 100
    assert choose_width(close, 0.99, 200, 500, tolerance=0.0).width == 200
    # No exact recall (nothing relevant) is no evidence for a width: its ratio is 0, not 1.
    assert GraphRecall(25, 0.0, 0.0, 60.0).ratio == 0.0
