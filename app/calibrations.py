"""Per-surface calibration of the offline prior (``bandits/calibration.py``) and examination
curve (``bandits/position.py``), read from the store.

The consumers add each impression's exposure and each click to the surface's calibration
pseudo-item (``streaming.events.calibration_item``) in the serving version's namespace. A
replica reads that one row at most once a second per (version, surface), so a request costs
no extra round trip in the steady state.

A new bundle starts a new namespace, hence an empty calibration. Until it has
``MIN_EXPOSURE`` of its own, the last curve this replica used for the surface (from the
previous version) is what sparse bins shrink to, and feedback on those requests teaches only
the calibration (``learn`` False): residuals are learnt only against a calibrated prior.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

from bandits.calibration import BINS, GROUPS, MIN_EXPOSURE, calibrate_grouped, grouped_curves
from bandits.checks import FloatArray, IntArray
from bandits.position import examination_curve, examination_prior
from streaming.events import calibration_item, examination_item
from streaming.stores import Store, StoreUnavailable

REFRESH_S = 1.0

T = TypeVar("T")


class _PseudoRows(Generic[T]):
    """One pseudo-item's row of both sums, ``(w2 (k,), b (k,))``, read at most once per
    ``refresh_s`` per key and turned into a value by ``derive``; when the store does not
    answer, the last value stands (zeros before any read)."""

    def __init__(self, store: Store, refresh_s: float) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._values: dict[Hashable, tuple[float, T]] = {}
        self.lock = threading.Lock()

    def get(self, key: Hashable, version: str, item: str, k: int, derive: Callable[[FloatArray, FloatArray], T]) -> T:
        now = time.monotonic()
        cached = self._values.get(key)
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1]
        try:
            w2, b = self._store.gather(version, [item], np.arange(k))
        except StoreUnavailable:
            if cached is not None:
                return cached[1]
            w2 = b = np.zeros((1, k))
        with self.lock:
            value = derive(w2[0], b[0])
            self._values[key] = (now, value)
        return value


class Calibrations:
    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        # (version, surface) → (curves (GROUPS, BINS), pooled curve (BINS,), total exposure)
        self._rows: _PseudoRows[tuple[FloatArray, FloatArray, float]] = _PseudoRows(store, refresh_s)
        # (surface, arm) → (namespace, its newest trusted curve); arm "" outside experiments
        self._last: dict[tuple[str, str], tuple[str, FloatArray]] = {}

    def apply(
        self, version: str, surface: str, raw: FloatArray, groups: IntArray | None = None
    ) -> tuple[FloatArray, bool]:
        """Calibrated priors (N,) for raw offline priors (N,) of items in popularity ``groups``
        (N,; all 0 when None), and whether the map is trusted."""
        curves, _, exposure = self._read(version, surface)
        g = np.zeros(len(raw), dtype=np.int64) if groups is None else groups
        return calibrate_grouped(raw, g, curves), exposure >= MIN_EXPOSURE

    def curve(self, version: str, surface: str) -> tuple[FloatArray, float]:
        """The map of all popularity groups together (BINS,) and its total exposure."""
        _, pooled, exposure = self._read(version, surface)
        return pooled, exposure

    def _read(self, version: str, surface: str) -> tuple[FloatArray, FloatArray, float]:
        arm = version.partition("@")[2]

        def derive(exposure: FloatArray, clicks: FloatArray) -> tuple[FloatArray, FloatArray, float]:
            # An arm falls back to its own last curve, then the surface's: every arm starts from
            # the same place, and no arm's sparse bins shrink towards another arm's curve.
            last = self._last.get((surface, arm)) or self._last.get((surface, ""))
            carried = last[1] if last is not None and last[0] != version else None
            curves, pooled = grouped_curves(exposure, clicks, prior_curve=carried)
            total = float(exposure.sum())
            if total >= MIN_EXPOSURE:
                self._last[(surface, arm)] = (version, pooled)
            return curves, pooled, total

        return self._rows.get((version, surface), version, calibration_item(surface), GROUPS * BINS, derive)


class ExaminationCurves:
    """The examination curve per (version, surface) and slate length, from the surface's
    randomised slates; it refreshes at most once a second. Sparse positions shrink to the last
    curve of another version (examination is a property of the page, not of the model) or,
    with none, to ``1 / log2(k + 2)``."""

    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        # (version, surface, k) → (curve (k,), randomised impressions per position (k,))
        self._rows: _PseudoRows[tuple[FloatArray, FloatArray]] = _PseudoRows(store, refresh_s)
        # (surface, arm, k) → (namespace, its newest trusted curve), as for the calibration
        self._last: dict[tuple[str, str, int], tuple[str, FloatArray]] = {}

    def curve(self, version: str, surface: str, k: int) -> FloatArray:
        """(k,) examination weights, 1 at the top slot."""
        return self.estimate(version, surface, k)[0]

    def estimate(self, version: str, surface: str, k: int) -> tuple[FloatArray, FloatArray]:
        """The curve (k,) and the randomised impressions per position (k,) behind it."""

        arm = version.partition("@")[2]

        def derive(n: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray]:
            last = self._last.get((surface, arm, k)) or self._last.get((surface, "", k))
            prior = last[1] if last is not None and last[0] != version else examination_prior(k)
            curve = examination_curve(n, c, prior)
            if n.min() >= MIN_EXPOSURE:
                self._last[(surface, arm, k)] = (version, curve)
            return curve, n.copy()

        return self._rows.get((version, surface, k), version, examination_item(surface), k, derive)
