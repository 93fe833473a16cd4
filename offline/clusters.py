"""User clusters (mini-batch k-means) and the candidate graph built on them.

The centroids are the coordinates of serving's sparse context; the candidate graph gives each
centroid its top-W items by inner product, so a request retrieves the rows of its active
clusters plus the fresh-item pool (DESIGN flow 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandits.checks import FloatArray, IntArray


def minibatch_kmeans(
    x: FloatArray, k: int, *, batch_size: int = 1024, iterations: int = 100, seed: int = 0
) -> FloatArray:
    """Mini-batch k-means (Sculley, WWW 2010) with k-means++ seeding.

    Parameters
    ----------
    x : (n, dim) points (user embeddings)
    k : number of centroids (<= n)

    Returns
    -------
    centroids : (k, dim)

    >>> rng = np.random.default_rng(0)
    >>> blobs = np.concatenate([rng.normal(c, 0.05, (50, 2)) for c in ([0, 0], [5, 5], [0, 5])])
    >>> c = minibatch_kmeans(blobs, 3, seed=1)
    >>> sorted(np.round(c).astype(int).tolist())
    [[0, 0], [0, 5], [5, 5]]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"x: expected a finite (n, dim) array, got shape {x.shape}")
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k: must be in 1..{n}, got {k}")
    rng = np.random.default_rng(seed)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    nearest = ((x - centroids[0]) ** 2).sum(1)
    for j in range(1, k):
        total = nearest.sum()
        pick = rng.choice(n, p=nearest / total) if total > 0 else rng.integers(n)
        centroids[j] = x[pick]
        nearest = np.minimum(nearest, ((x - centroids[j]) ** 2).sum(1))
    counts = np.zeros(k)
    for _ in range(iterations):
        batch = x[rng.choice(n, min(batch_size, n), replace=False)]
        assign = assign_clusters(batch, centroids)
        for j in np.unique(assign):
            members = batch[assign == j]
            counts[j] += len(members)
            # Per-centre learning rate 1/count: each centre is the running mean of its points.
            centroids[j] += (members.sum(0) - len(members) * centroids[j]) / counts[j]
    return centroids


def assign_clusters(x: FloatArray, centroids: FloatArray) -> IntArray:
    """Index of the nearest centroid (Euclidean) for each row of ``x`` (n,)."""
    d = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.asarray(d.argmin(1), dtype=np.int64)


def candidate_graph(
    centroids: FloatArray, item_emb: FloatArray, width: int, item_offset: FloatArray | None = None
) -> IntArray:
    """Top-``width`` item rows per centroid by inner product, plus ``item_offset`` (n_items,) when
    given (the served score's per-item part), best first: (C, width).

    >>> candidate_graph(np.array([[1.0, 0.0]]), np.array([[0.1, 0.0], [0.9, 0.0], [0.5, 0.0]]), 2).tolist()
    [[1, 2]]
    >>> candidate_graph(np.array([[1.0, 0.0]]), np.array([[0.1, 0.0], [0.9, 0.0], [0.5, 0.0]]), 2,
    ...                 np.array([1.0, 0.0, 0.0])).tolist()
    [[0, 1]]
    """
    width = min(width, len(item_emb))
    scores = centroids @ item_emb.T
    if item_offset is not None:
        scores = scores + item_offset[None, :]
    top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    order = np.take_along_axis(scores, top, 1).argsort(1)[:, ::-1]
    return np.asarray(np.take_along_axis(top, order, 1), dtype=np.int64)


def fresh_pool(
    created_at: FloatArray, impressions: FloatArray, now: float, max_age_s: float, max_impressions: float
) -> IntArray:
    """Item rows younger than ``max_age_s`` or with fewer than ``max_impressions`` impressions."""
    young = np.nan_to_num(now - created_at, nan=np.inf) < max_age_s
    unseen = impressions < max_impressions
    return np.flatnonzero(young | unseen).astype(np.int64)


@dataclass(frozen=True)
class GraphRecall:
    """How the candidate graph retrieves on a holdout, at one width: mean Recall of the graph
    rows of each user's ``k_nearest`` clusters (``recall``), mean Recall of the model's exact
    top-n for the same n per user (``exact``, n the candidates she had not seen), the mean
    number of candidates a request scores, seen ones included (``candidates``), and how many
    holdout users were counted (``users``)."""

    width: int
    recall: float
    exact: float
    candidates: float
    users: int = 0

    @property
    def ratio(self) -> float:
        return self.recall / self.exact if self.exact > 0 else 0.0


def graph_recall(
    graph: IntArray,
    centroids: FloatArray,
    k_nearest: int,
    user_emb: FloatArray,
    scores: FloatArray,
    relevant: list[set[int]],
    seen: list[set[int]],
    widths: Sequence[int],
) -> list[GraphRecall]:
    """The graph's holdout recall at each of ``widths`` (each at most ``graph.shape[1]``: a
    narrower graph is the first columns of a wider one, both best first), against the exact
    top-n of ``scores`` (U, n_items) with the same n per user.

    ``user_emb`` (U, dim) are the holdout users' embeddings and ``centroids`` (C, dim) unit
    vectors: a user's clusters are her ``k_nearest`` by cosine, as serving picks them
    (``app.recommender.sparse_context``). Items in ``seen`` are never hits, as in
    ``offline.two_tower.recall_at_k``; serving scores them all the same, so they count as
    candidates, but not towards the exact top-n's n.

    >>> g = np.array([[0, 1], [2, 3]])
    >>> c = np.eye(2)
    >>> r = graph_recall(g, c, 1, np.array([[1.0, 0.0]]), np.array([[0.9, 0.1, 0.8, 0.0]]), [{0, 2}], [set()], [1, 2])
    >>> [(x.width, x.recall, x.exact, x.candidates) for x in r]  # her cluster's row lacks item 2
    [(1, 0.5, 0.5, 1.0), (2, 0.5, 1.0, 2.0)]
    """
    unit = user_emb / np.maximum(np.linalg.norm(user_emb, axis=1, keepdims=True), 1e-12)
    k = min(k_nearest, len(centroids))
    near = np.argpartition(-(unit @ centroids.T), k - 1, axis=1)[:, :k]
    sums = {w: [0.0, 0.0, 0.0] for w in widths}
    counted = 0
    for u, (rel, skip) in enumerate(zip(relevant, seen, strict=True)):
        if not rel:
            continue
        counted += 1
        row = scores[u].copy()
        if skip:
            row[list(skip)] = -np.inf
        top_n = min(k * max(widths), len(row))  # no user has more candidates than this
        order = np.argpartition(-row, top_n - 1)[:top_n]
        order = order[np.argsort(-row[order], kind="stable")]
        for w in widths:
            scored = set(graph[near[u], :w].ravel().tolist())
            cands = scored - skip
            top = set(order[: len(cands)].tolist())
            acc = sums[w]
            acc[0] += len(rel & cands) / len(rel)
            acc[1] += len(rel & top) / len(rel)
            acc[2] += len(scored)
    c = max(counted, 1)
    return [GraphRecall(w, sums[w][0] / c, sums[w][1] / c, sums[w][2] / c, counted) for w in widths]


def choose_width(
    results: Sequence[GraphRecall], ratio: float, min_candidates: float, max_candidates: float, tolerance: float = 0.02
) -> GraphRecall:
    """The width to build, among those giving ``min_candidates`` to ``max_candidates`` per
    request: the narrowest whose graph recall is at least ``ratio`` of the exact top-n's, else
    the narrowest within ``tolerance`` of the best ratio there (a wider graph costs every
    request; a hair of recall ratio is holdout noise). When no width falls in the range, the
    one with the candidate count nearest to it.

    >>> rs = [GraphRecall(50, 0.10, 0.14, 180.0), GraphRecall(100, 0.19, 0.20, 350.0),
    ...       GraphRecall(150, 0.25, 0.27, 440.0), GraphRecall(200, 0.30, 0.30, 700.0)]
    >>> choose_width(rs, 0.95, 200, 500).width  # 0.95 of exact at 350 candidates
    100
    >>> choose_width(rs, 0.99, 200, 500).width  # none reaches it; 100's 0.950 is the best in range
    100
    >>> choose_width(rs, 0.99, 600, 900).width, choose_width(rs, 0.99, 10, 100).width
    (200, 50)
    """
    within = sorted((r for r in results if min_candidates <= r.candidates <= max_candidates), key=lambda r: r.width)
    if not within:
        return min(results, key=lambda r: max(min_candidates - r.candidates, r.candidates - max_candidates))
    for r in within:
        if r.ratio >= ratio:
            return r
    best = max(r.ratio for r in within)
    return next(r for r in within if r.ratio >= best - tolerance)
