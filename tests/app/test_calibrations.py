"""The served calibration reads each popularity group's map from the pseudo-item's row."""

from __future__ import annotations

import numpy as np

from app.calibrations import Calibrations
from bandits.calibration import BINS, GROUPS, bin_centres, bin_of
from streaming.events import calibration_item
from streaming.stores import ItemDelta, MemoryStore


def test_a_popular_item_is_calibrated_by_its_own_groups_click_rate() -> None:
    store = MemoryStore()
    b = int(bin_of([0.5])[0])
    top, rest = (GROUPS - 1) * BINS + b, b
    # Same raw prior: the top-10 items were clicked 12% of the time, the rest 2%.
    coords = np.array([rest, top], dtype=np.int64)
    delta = ItemDelta(calibration_item("home"), 0, 0, coords, np.array([5000.0, 5000.0]), np.array([100.0, 600.0]), {})
    store.apply("v1", 0, [delta], 60.0)
    calibrations = Calibrations(store, refresh_s=0.0)
    raw = float(bin_centres()[b])  # at the centre: no interpolation with the neighbouring bins
    prior, trusted = calibrations.apply("v1", "home", np.full(3, raw), np.array([0, GROUPS - 1, 1]))
    assert trusted
    assert abs(prior[0] - 0.02) < 0.002 and abs(prior[1] - 0.12) < 0.01
    # A group without traffic of its own gets the map of all groups together.
    pooled, exposure = calibrations.curve("v1", "home")
    assert exposure == 10_000.0 and abs(prior[2] - pooled[b]) < 1e-9 and 0.06 < prior[2] < 0.08
    # Without groups (a bundle with no popular list) everything goes through group 0.
    same, _ = calibrations.apply("v1", "home", np.array([raw]))
    assert same[0] == prior[0]
