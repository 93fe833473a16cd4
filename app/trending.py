"""The serving version's trending items, read from the store at most once a second.

The consumers keep, per bundle version, the items whose pooled residual says they now do much
better than their prior predicts (``bandits.pooled.trending_scores``, ``streaming/consumer.py``).
In retrieval mode the top of that list joins every request's candidates: the candidate graph
and the bundle's popular list are fixed at training time, so an item that turns into a hit
between two offline runs would otherwise reach only the clusters whose graph holds it. Joining
the candidates is all the list does; each user's own score (prior plus residuals) decides
whether it is shown, so an item that was only lucky falls out as its residual falls.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from bandits.checks import IntArray
from offline.bundle import Bundle
from streaming.stores import Store, StoreUnavailable

REFRESH_S = 1.0
# Items read per refresh: more than any surface's trending_per_request.
READ = 100


class Trending:
    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._read_at: dict[str, float] = {}
        self._ids: dict[str, list[str]] = {}

    def rows(self, bundle: Bundle, n: int, namespace: str | None = None) -> IntArray:
        """The bundle rows (at most ``n``,) of the version's best trending items (or those of
        ``namespace``, an experiment arm's), best first; the last list read when the store does
        not answer, empty before any."""
        ids = self.ids(bundle.version if namespace is None else namespace, n)
        rows = [bundle.item_index.get(i, -1) for i in ids]
        return np.array([r for r in rows if r >= 0], dtype=np.int64)

    def ids(self, version: str, n: int) -> list[str]:
        """The ids (at most ``n``) of the version's best trending items, best first, the bundle's
        and live items alike; the last list read when the store does not answer."""
        if n <= 0:
            return []
        now = time.monotonic()
        if now - self._read_at.get(version, float("-inf")) >= self._refresh_s:
            with self._lock:
                self._read_at[version] = now  # one reader per refresh; the others use the last list
            try:
                ids = self._store.trending(version, READ)
                with self._lock:
                    self._ids = {version: ids}  # only the serving version is kept
            except StoreUnavailable:
                pass
        return self._ids.get(version, [])[:n]
