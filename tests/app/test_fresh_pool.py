"""The fresh pool's graduation (``app/fresh.py``): what is drawable is always the bundle's pool
less the items whose latest observed evidence reached the threshold, per namespace."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.fresh import MAX_NAMESPACES, FreshPool

N_ROWS = 30
FRESH = np.array([1, 4, 5, 9, 12, 20, 29], dtype=np.int64)

observation = st.tuples(
    st.sampled_from(["v1", "v1@arm", "v2"]),
    st.lists(st.sampled_from(FRESH.tolist()), min_size=1, max_size=5, unique=True),
    st.lists(st.floats(0.0, 20.0), min_size=5, max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(observation, max_size=30), st.floats(0.5, 15.0))
def test_the_drawable_pool_is_the_bundle_pool_less_what_last_read_graduated(
    observations: list[tuple[str, list[int], list[float]]], threshold: float
) -> None:
    pool = FreshPool()
    latest: dict[str, dict[int, float]] = {}
    for namespace, rows, evidence in observations:
        ev = np.array(evidence[: len(rows)])
        pool.observe(namespace, N_ROWS, np.array(rows, dtype=np.int64), ev, threshold)
        latest.setdefault(namespace, {}).update(zip(rows, ev.tolist(), strict=True))
    for namespace in ("v1", "v1@arm", "v2", "never-seen"):
        seen = latest.get(namespace, {})
        expected = [r for r in FRESH.tolist() if seen.get(r, 0.0) < threshold]
        assert pool.eligible(namespace, FRESH).tolist() == expected
        assert pool.graduated(namespace) == len(FRESH) - len(expected)


def test_only_the_latest_namespaces_are_kept() -> None:
    pool = FreshPool()
    for n in range(MAX_NAMESPACES + 3):
        pool.observe(f"v{n}", N_ROWS, np.array([4]), np.array([50.0]), 10.0)
    assert pool.graduated("v0") == 0 and pool.eligible("v0", FRESH).tolist() == FRESH.tolist()
    assert pool.graduated(f"v{MAX_NAMESPACES + 2}") == 1
