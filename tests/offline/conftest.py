from __future__ import annotations

from pathlib import Path

import pytest

from bench.movielens import MOVIELENS, to_contract
from tests.conftest import unavailable


@pytest.fixture(scope="session")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The MovieLens sample in the contract's columns (bench/movielens.py), in a temp dir."""
    if not (MOVIELENS / "ratings.csv").exists():
        unavailable(f"MovieLens sample not found at {MOVIELENS}")
    return to_contract(tmp_path_factory.mktemp("movielens"))
