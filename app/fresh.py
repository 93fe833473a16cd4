"""The fresh pool that retrieval explores: the bundle's, less the items that graduated online.

The offline job puts an item in the bundle's fresh pool when it had fewer than a handful of
training impressions (``offline/clusters.py``, ``fresh_pool``). Between two bundles, the
service's own traffic gathers evidence on those items, and an item the statistics already know
no longer needs the exploration budget: it **graduates** once its item-level evidence
``n_0 = Σ w²`` (the pool coordinate's, in top-slot impressions' worth, ``bandits/pooled.py``)
reaches the surface's ``fresh_graduate``. A surface without pooling has no item-level evidence
(per-cluster sums depend on who asks), so its pool stays the bundle's. It
still competes as any candidate does wherever the candidate graph, popularity or trending
brings it; it only stops taking a seat in the random fresh draw, which then reaches the items
nobody has learnt about yet. An item whose evidence falls below the threshold again (a reset
namespace) rejoins the pool the next time a request reads it.

Each serving process keeps its own mask per statistics namespace and surface (surfaces share a
namespace's statistics but each sets its own threshold), learnt from the statistics its
requests read anyway (no extra round trip), so replicas converge on the same pool as their
requests see the same items; a new bundle version is a new namespace and starts from its
bundle's pool (``fresh_key``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from bandits.checks import FloatArray, IntArray

# Masks a process keeps, least recently used dropped first: every surface of a version and of its
# experiment arms (up to 8 each), and of the version before it while it drains. A dropped mask
# only returns its graduates to the draw until their items are read again.
MAX_NAMESPACES = 256


def fresh_key(namespace: str, surface: str) -> str:
    """The mask of ``surface`` in statistics ``namespace``."""
    return f"{namespace}|{surface}"


class FreshPool:
    """Per statistics namespace, which rows of the bundle's fresh pool have graduated.

    >>> pool = FreshPool()
    >>> fresh = np.array([3, 5, 7])
    >>> pool.observe("v1", 10, rows=np.array([3, 5]), evidence=np.array([2.0, 12.0]), threshold=10.0)
    1
    >>> pool.eligible("v1", fresh).tolist()
    [3, 7]
    >>> pool.eligible("v2", fresh).tolist()  # another namespace keeps the bundle's pool
    [3, 5, 7]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # namespace -> (graduated mask over bundle rows, eligible rows or None when stale)
        self._masks: OrderedDict[str, tuple[npt.NDArray[np.bool_], IntArray | None]] = OrderedDict()

    def eligible(self, namespace: str, fresh: IntArray) -> IntArray:
        """The rows of ``fresh`` (the bundle's pool) that have not graduated in ``namespace``."""
        with self._lock:
            entry = self._masks.get(namespace)
            if entry is None:
                return fresh
            mask, cached = entry
            if cached is None:
                cached = fresh[~mask[fresh]]
                self._masks[namespace] = (mask, cached)
            self._masks.move_to_end(namespace)
            return cached

    def graduated(self, namespace: str) -> int:
        """How many rows have graduated in ``namespace``."""
        with self._lock:
            entry = self._masks.get(namespace)
            return 0 if entry is None else int(entry[0].sum())

    def observe(self, namespace: str, n_rows: int, rows: IntArray, evidence: FloatArray, threshold: float) -> int:
        """Record what a request read: ``rows`` (N,), rows of the bundle's fresh pool (of
        ``n_rows`` in all), with their item-level ``evidence`` (N,). Returns how many changed."""
        now = evidence >= threshold
        with self._lock:
            entry = self._masks.get(namespace)
            if entry is None:
                if not now.any():
                    return 0  # nothing graduated here yet: no mask to keep
                mask = np.zeros(n_rows, dtype=bool)
            else:
                mask = entry[0]
            changed = int((mask[rows] != now).sum())
            if changed:
                mask[rows] = now
                self._masks[namespace] = (mask, None)
            self._masks.move_to_end(namespace)
            while len(self._masks) > MAX_NAMESPACES:
                self._masks.popitem(last=False)
            return changed
