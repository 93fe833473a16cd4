"""Examination: how likely a user is to look at each slot of a slate.

Positions count from 0; the curve is 1 at the top slot. Expected clicks of an item at position
``k`` are its top-slot click probability times ``exam[k]`` (the position-based model of
Joachims et al. 2017 and Wang et al. 2018), so updates, the bonus and the calibration all work
on the top-slot scale (``bandits/pooled.py``, ``bandits/calibration.py``).
"""

from __future__ import annotations

import numpy as np

from bandits.checks import FloatArray


def examination_prior(k: int) -> FloatArray:
    """The usual starting curve (k,), ``1 / log2(position + 2)``, the DCG discount.

    >>> examination_prior(3).round(3).tolist()
    [1.0, 0.631, 0.5]
    """
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    return np.asarray(1.0 / np.log2(np.arange(k) + 2.0), dtype=np.float64)
