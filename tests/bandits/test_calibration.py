"""The calibration's bins: the consumer's scalar path agrees with the array path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bandits.calibration import bin_index, bin_of


@given(st.floats(0.0, 1.0, allow_nan=False))
def test_the_scalar_bin_is_the_array_bin(raw: float) -> None:
    assert bin_index(raw) == int(bin_of([raw])[0])
