"""The MovieLens sample in the contract's columns, written to a scratch directory (never committed):
interactions ``user_id,item_id,timestamp,reward`` (reward 1 for a rating >= 4) and items
``item_id,genres`` (genres ``|``-separated)."""

from __future__ import annotations

import csv
from pathlib import Path

MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "movielens-latest-small"


def to_contract(out: Path, source: Path = MOVIELENS) -> tuple[Path, Path]:
    with (source / "ratings.csv").open() as src, (out / "interactions.csv").open("w", newline="") as dst:
        w = csv.writer(dst)
        w.writerow(["user_id", "item_id", "timestamp", "reward"])
        for row in csv.DictReader(src):
            w.writerow([row["userId"], row["movieId"], row["timestamp"], 1.0 if float(row["rating"]) >= 4 else 0.0])
    with (source / "movies.csv").open() as src, (out / "items.csv").open("w", newline="") as dst:
        w = csv.writer(dst)
        w.writerow(["item_id", "genres"])
        for row in csv.DictReader(src):
            w.writerow([row["movieId"], row["genres"]])
    return out / "interactions.csv", out / "items.csv"
