"""User clusters (mini-batch k-means) and the candidate graph built on them.

The centroids are the coordinates of serving's sparse context; the candidate graph gives each
centroid its top-W items by inner product, so a request retrieves the rows of its active
clusters plus the fresh-item pool (DESIGN flow 1).
"""

from __future__ import annotations

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
