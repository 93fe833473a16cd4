"""Diag statistics stores: the interface, and the embedded in-memory implementation.

The Redis implementation is in ``streaming/redis_store.py`` (the one module that talks to
Redis); both pass the same contract tests (``tests/streaming/test_stats_store_contract.py``).

Semantics shared by every store
-------------------------------
- Statistics are namespaced by bundle ``version``: a new clustering changes what every
  coordinate means, so a new version starts empty.
- Per (item, coordinate) the store holds ``w2`` and ``b`` (see ``bandits/README.md``); a
  missing entry reads as 0, i.e. ``d = λ``.
- ``apply`` is idempotent per (item, partition): each item remembers, per Kafka partition, the
  highest offset already applied. A delta whose ``offset`` is not above it changes nothing, so
  a batch redelivered after a crash (written, but offsets not committed) is not counted twice.
  The check and the additions are one atomic step per item.
- Consumers read ``watermarks`` before aggregating, and drop events at or below them, so a
  redelivered batch with different boundaries still counts each event exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bandits.checks import FloatArray, IntArray


@dataclass(frozen=True)
class ItemDelta:
    """Summed statistics for one item from one partition, up to and including ``offset``.

    Attributes
    ----------
    item : item id
    offset : highest Kafka offset of the events summed here
    coords : (M,) int64 coordinates
    w2 : (M,) float64 Σ w² per coordinate
    b : (M,) float64 Σ w·(r − p) per coordinate
    """

    item: str
    offset: int
    coords: IntArray
    w2: FloatArray
    b: FloatArray


class StatsStore(Protocol):
    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        """Return ``(w2, b)``, each (len(items), len(coords)), in one round trip."""
        ...

    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        """Highest applied offset per item for ``partition`` (-1 when none)."""
        ...

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta]) -> int:
        """Apply each delta whose offset is above the item's watermark; return how many applied."""
        ...

    def ping(self) -> bool: ...


class MemoryStatsStore:
    """The embedded default: same semantics, in process, thread-safe."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], dict[int, list[float]]] = {}
        self._marks: dict[tuple[str, str], dict[int, int]] = {}
        self._lock = threading.Lock()

    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        w2 = np.zeros((len(items), len(coords)))
        b = np.zeros((len(items), len(coords)))
        with self._lock:
            for i, item in enumerate(items):
                cells = self._stats.get((version, item))
                if not cells:
                    continue
                for k, f in enumerate(coords.tolist()):
                    cell = cells.get(f)
                    if cell is not None:
                        w2[i, k], b[i, k] = cell
        return w2, b

    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {item: self._marks.get((version, item), {}).get(partition, -1) for item in items}

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta]) -> int:
        applied = 0
        with self._lock:
            for delta in deltas:
                marks = self._marks.setdefault((version, delta.item), {})
                if delta.offset <= marks.get(partition, -1):
                    continue
                cells = self._stats.setdefault((version, delta.item), {})
                for f, w2, b in zip(delta.coords.tolist(), delta.w2.tolist(), delta.b.tolist(), strict=True):
                    cell = cells.setdefault(f, [0.0, 0.0])
                    cell[0] += w2
                    cell[1] += b
                marks[partition] = delta.offset
                applied += 1
        return applied

    def ping(self) -> bool:
        return True
