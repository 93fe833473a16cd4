from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline.data import DataError, load_interactions, load_items, load_users, split_by_time


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_interactions_with_and_without_reward(tmp_path: Path) -> None:
    data = load_interactions(
        write(tmp_path, "i.csv", "user_id,item_id,timestamp,reward\nu1,a,10,1\nu2,b,2000-01-01T00:00:00Z,0\n")
    )
    assert data.user_ids.tolist() == ["u1", "u2"] and data.reward.tolist() == [1.0, 0.0]
    assert data.timestamp[1] == 946684800.0
    plain = load_interactions(write(tmp_path, "p.csv", "item_id,user_id,timestamp\na,u1,5\n"))
    assert plain.reward.tolist() == [1.0] and plain.item_ids.tolist() == ["a"]


def test_items_with_multi_valued_features(tmp_path: Path) -> None:
    items = load_items(write(tmp_path, "items.csv", "item_id,created_at,genres\na,100,Action|Comedy\nb,,\n"))
    assert items.features["genres"] == [["Action", "Comedy"], []]
    assert items.created_at[0] == 100.0 and np.isnan(items.created_at[1])


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("i.csv", "user_id,timestamp\nu,1\n", r"i\.csv, row 1: missing column\(s\) item_id"),
        ("i.csv", "", r"i\.csv, row 1: empty file"),
        ("i.csv", "user_id,item_id,timestamp\n", r"i\.csv, row 2: no interactions"),
        (
            "i.csv",
            "user_id,item_id,timestamp\nu,a,1\nu,b,yesterday\n",
            r"i\.csv, row 3, column timestamp: not a timestamp: 'yesterday'",
        ),
        ("i.csv", "user_id,item_id,timestamp,reward\nu,a,1,nan\n", r"row 2, column reward: not a finite number"),
        ("i.csv", "user_id,item_id,timestamp\nu,,1\n", r"row 2, column item_id: empty id"),
        ("i.csv", "user_id,item_id,timestamp\nu,a\n", r"row 2: expected 3 fields, found 2"),
    ],
)
def test_bad_interaction_files_name_file_row_and_column(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        load_interactions(write(tmp_path, name, text))


def test_duplicate_item_ids_are_refused_with_both_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"items\.csv, row 4, column item_id: duplicate item id 'a' \(first at row 2\)"):
        load_items(write(tmp_path, "items.csv", "item_id,genres\na,x\nb,y\na,z\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_interactions(tmp_path / "nope.csv")


def test_temporal_split_keeps_the_future_out_of_training(tmp_path: Path) -> None:
    rows = "".join(f"u{n % 3},i{n},{n}\n" for n in range(100))
    data = load_interactions(write(tmp_path, "i.csv", "user_id,item_id,timestamp\n" + rows))
    train, valid, split = split_by_time(data, 0.2)
    assert len(train) + len(valid) == 100 and train.timestamp.max() < split <= valid.timestamp.min()
    with pytest.raises(ValueError, match="valid_fraction"):
        split_by_time(data, 1.0)


def test_movielens_loads_and_splits(movielens: tuple[Path, Path]) -> None:
    interactions, items_path = movielens
    data = load_interactions(interactions)
    items = load_items(items_path)
    assert len(data) > 100_000 and len(items.item_ids) > 9000
    assert 0.4 < data.reward.mean() < 0.6  # ratings >= 4 are roughly half
    assert "Comedy" in {g for gs in items.features["genres"] for g in gs}
    train, valid, _split = split_by_time(data, 0.1)
    fresh = set(valid.item_ids.tolist()) - set(train.item_ids.tolist())
    assert fresh, "movies first rated after the split are the fresh items"


def test_parquet_files_load_like_csv_and_errors_name_the_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    interactions, items, users = tmp_path / "i.parquet", tmp_path / "it.parquet", tmp_path / "u.parquet"
    pq.write_table(
        pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "timestamp": [10, 20], "reward": [1.0, 0.0]}),
        interactions,
    )
    pq.write_table(pa.table({"item_id": ["a", "b"], "created_at": [1.0, None], "genres": ["x|y", None]}), items)
    pq.write_table(pa.table({"user_id": ["u1"], "team": ["red"], "age": [25.0]}), users)
    data = load_interactions(interactions)
    assert data.user_ids.tolist() == ["u1", "u2"] and data.timestamp.tolist() == [10.0, 20.0]
    assert data.reward.tolist() == [1.0, 0.0]
    catalogue = load_items(items)
    assert catalogue.features["genres"] == [["x", "y"], []] and np.isnan(catalogue.created_at[1])
    # A float column reads as a CSV would write it, so its tokens match a request's 25 or 25.0.
    assert load_users(users).features == {"team": [["red"]], "age": [["25"]]}

    pq.write_table(
        pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "timestamp": ["10", "soon"]}), interactions
    )
    with pytest.raises(DataError, match=r"i\.parquet, row 3, column timestamp: not a timestamp: 'soon'"):
        load_interactions(interactions)
