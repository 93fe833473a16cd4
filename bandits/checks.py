"""Input validation shared by the policies: every error is a ``ValueError`` naming the argument.

Validation runs once at the edge of each public call; the math below it assumes clean input.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def as_float(name: str, value: ArrayLike, ndim: int) -> FloatArray:
    """Return ``value`` as a float64 array of ``ndim`` dimensions with only finite entries."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {type(value).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim}-d array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def as_index(name: str, value: ArrayLike, ndim: int, upper: int | None = None) -> IntArray:
    """Return ``value`` as an int64 array of non-negative indices (below ``upper`` when given)."""
    arr = np.asarray(value)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim}-d array, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: indices must be >= 0, got {int(arr.min())}")
    if upper is not None and arr.size and arr.max() >= upper:
        raise ValueError(f"{name}: index {int(arr.max())} out of range (< {upper})")
    return arr


def same_length(**arrays: NDArray[np.generic]) -> int:
    """Check that all arrays share their first dimension; return it."""
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"mismatched lengths: {shown}")
    return int(next(iter(lengths.values())))


def non_negative(name: str, value: float) -> float:
    """Return ``value`` as float, refusing NaN, infinity and negatives."""
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return v


def positive(name: str, value: float) -> float:
    """Return ``value`` as float, refusing NaN, infinity, zero and negatives."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def fraction(name: str, value: float) -> float:
    """Return ``value`` as float in [0, 1]."""
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return v
