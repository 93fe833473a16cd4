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

import numpy as np

from bandits.calibration import BINS, MIN_EXPOSURE, calibrate, calibration_curve
from bandits.checks import FloatArray
from bandits.position import examination_curve, examination_prior
from streaming.events import calibration_item, examination_item
from streaming.stores import Store, StoreUnavailable

REFRESH_S = 1.0


class Calibrations:
    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        # (version, surface) → (read at, curve (BINS,), total exposure)
        self._curves: dict[tuple[str, str], tuple[float, FloatArray, float]] = {}
        self._last: dict[str, tuple[str, FloatArray]] = {}  # surface → (version, its newest trusted curve)

    def apply(self, version: str, surface: str, raw: FloatArray) -> tuple[FloatArray, bool]:
        """Calibrated priors (N,) for raw offline priors (N,), and whether the map is trusted."""
        curve, exposure = self.curve(version, surface)
        return calibrate(raw, curve), exposure >= MIN_EXPOSURE

    def curve(self, version: str, surface: str) -> tuple[FloatArray, float]:
        key = (version, surface)
        now = time.monotonic()
        cached = self._curves.get(key)
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1], cached[2]
        try:
            exposure, clicks = self._store.gather(version, [calibration_item(surface)], np.arange(BINS))
        except StoreUnavailable:
            if cached is not None:
                return cached[1], cached[2]
            exposure = clicks = np.zeros((1, BINS))
        total = float(exposure[0].sum())
        with self._lock:
            last = self._last.get(surface)
            carried = last[1] if last is not None and last[0] != version else None
            curve = calibration_curve(exposure[0], clicks[0], prior_curve=carried)
            if total >= MIN_EXPOSURE:
                self._last[surface] = (version, curve)
            self._curves[key] = (now, curve, total)
        return curve, total


class ExaminationCurves:
    """The examination curve per (version, surface) and slate length, from the surface's
    randomised slates; it refreshes at most once a second. Sparse positions shrink to the last
    curve of another version (examination is a property of the page, not of the model) or,
    with none, to ``1 / log2(k + 2)``."""

    def __init__(self, store: Store, refresh_s: float = REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._curves: dict[tuple[str, str, int], tuple[float, FloatArray, FloatArray]] = {}
        self._last: dict[tuple[str, int], tuple[str, FloatArray]] = {}

    def curve(self, version: str, surface: str, k: int) -> FloatArray:
        """(k,) examination weights, 1 at the top slot."""
        return self.estimate(version, surface, k)[0]

    def estimate(self, version: str, surface: str, k: int) -> tuple[FloatArray, FloatArray]:
        """The curve (k,) and the randomised impressions per position (k,) behind it."""
        key = (version, surface, k)
        now = time.monotonic()
        cached = self._curves.get(key)
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1], cached[2]
        try:
            n, c = self._store.gather(version, [examination_item(surface)], np.arange(k))
        except StoreUnavailable:
            if cached is not None:
                return cached[1], cached[2]
            n = c = np.zeros((1, k))
        with self._lock:
            last = self._last.get((surface, k))
            prior = last[1] if last is not None and last[0] != version else examination_prior(k)
            curve = examination_curve(n[0], c[0], prior)
            if n[0].min() >= MIN_EXPOSURE:
                self._last[(surface, k)] = (version, curve)
            self._curves[key] = (now, curve, n[0].copy())
        return curve, n[0]
