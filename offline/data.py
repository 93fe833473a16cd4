"""Loading the offline job's input files, with errors that name the file, row and column.

Contract (DESIGN.md): interactions ``user_id,item_id,timestamp[,reward]``; items
``item_id[,created_at][,feature columns...]``; users ``user_id[,feature columns...]``, where a
``|``-separated string is a multi-valued categorical feature. Timestamps are epoch seconds or
ISO 8601. Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MAX_ID_LENGTH = 256


class DataError(ValueError):
    """Bad input: ``str(error)`` reads ``file, row R, column C: what is wrong``."""

    def __init__(self, path: Path, message: str, row: int | None = None, column: str | None = None) -> None:
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column = path, row, column


def parse_time(text: str) -> float:
    """Epoch seconds (int or float) or ISO 8601; raises ValueError otherwise.

    >>> parse_time("964982703"), parse_time("2000-07-30T18:45:03+00:00")
    (964982703.0, 964982703.0)
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        value = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    if not math.isfinite(value):
        raise ValueError(f"not a finite time: {text!r}")
    return value


@dataclass(frozen=True)
class Interactions:
    """Arrays of one interaction file, row order kept.

    Attributes
    ----------
    user_ids, item_ids : (E,) str
    timestamp : (E,) float64 epoch seconds
    reward : (E,) float64 (1.0 where the file has no reward column)
    shown : (E,) bool, True where the row is an impression, whose reward 0 is a real negative
        (a file with the ``explore_p`` column of ``offline/logs.py``'s export); False where the
        row is an engagement the user chose, a rating or a watch, whatever its reward
    """

    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    timestamp: NDArray[np.float64]
    reward: NDArray[np.float64]
    shown: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if len(self.shown) != len(self.timestamp):  # engagement unless told: the contract's plain file
            object.__setattr__(self, "shown", np.zeros(len(self.timestamp), dtype=bool))

    def __len__(self) -> int:
        return len(self.timestamp)

    def take(self, mask: NDArray[np.bool_]) -> Interactions:
        return Interactions(
            self.user_ids[mask], self.item_ids[mask], self.timestamp[mask], self.reward[mask], self.shown[mask]
        )

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        """Several files as one (e.g. a catalogue history and an export of the service's logs)."""
        return Interactions(
            np.concatenate([p.user_ids for p in parts]),
            np.concatenate([p.item_ids for p in parts]),
            np.concatenate([p.timestamp for p in parts]),
            np.concatenate([p.reward for p in parts]),
            np.concatenate([p.shown for p in parts]),
        )


@dataclass(frozen=True)
class Users:
    """Optional user features (``user_id[,feature columns...]``), multi-valued allowed."""

    user_ids: NDArray[np.str_]
    features: dict[str, list[list[str]]] = field(default_factory=dict)  # column -> per-user values


@dataclass(frozen=True)
class Items:
    """The item catalogue: ids, creation times and categorical features (multi-valued allowed)."""

    item_ids: NDArray[np.str_]
    created_at: NDArray[np.float64]  # NaN where unknown
    features: dict[str, list[list[str]]] = field(default_factory=dict)  # column -> per-item values


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.suffix.lower() == ".parquet":
        return _parquet_rows(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "empty file (no header)", row=1) from None
        rows = list(reader)
    return [h.strip() for h in header], rows


def _parquet_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(path, "reading Parquet needs pyarrow (`pip install -e .[offline]`)") from exc
    table = pq.read_table(path)
    columns = [[_cell(v) for v in col.to_pylist()] for col in table.columns]
    return list(table.column_names), [list(r) for r in zip(*columns, strict=True)]


def _cell(value: object) -> str:
    """A Parquet value as the text a CSV would hold: a whole float reads ``25``, not ``25.0``,
    so that feature tokens match those of a request (``offline.bundle.feature_tokens``)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _require(path: Path, header: list[str], needed: tuple[str, ...]) -> dict[str, int]:
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in needed if name not in index]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})", row=1)
    return index


def _check_id(path: Path, row: int, column: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise DataError(path, "empty id", row, column)
    if len(value) > MAX_ID_LENGTH or "{" in value or "}" in value:
        raise DataError(path, f"invalid id {value[:40]!r} (at most {MAX_ID_LENGTH} characters, no braces)", row, column)
    return value


def load_interactions(path: Path) -> Interactions:
    header, rows = read_rows(path)
    index = _require(path, header, ("user_id", "item_id", "timestamp"))
    if not rows:
        raise DataError(path, "no interactions (header only)", row=2)
    has_reward = "reward" in index
    users, items, times, rewards = [], [], [], []
    for n, raw in enumerate(rows, start=2):
        if len(raw) != len(header):
            raise DataError(path, f"expected {len(header)} fields, found {len(raw)}", row=n)
        users.append(_check_id(path, n, "user_id", raw[index["user_id"]]))
        items.append(_check_id(path, n, "item_id", raw[index["item_id"]]))
        try:
            times.append(parse_time(raw[index["timestamp"]]))
        except ValueError:
            raise DataError(path, f"not a timestamp: {raw[index['timestamp']]!r}", n, "timestamp") from None
        if has_reward:
            try:
                reward = float(raw[index["reward"]])
            except ValueError:
                raise DataError(path, f"not a number: {raw[index['reward']]!r}", n, "reward") from None
            if not math.isfinite(reward):
                raise DataError(path, f"not a finite number: {raw[index['reward']]!r}", n, "reward")
            rewards.append(reward)
        else:
            rewards.append(1.0)
    shown = np.full(len(times), "explore_p" in index)
    return Interactions(np.array(users), np.array(items), np.array(times), np.array(rewards), shown)


def load_items(path: Path) -> Items:
    ids, created, features = _entities(path, "item_id", "items", ("created_at",))
    return Items(ids, created, features)


def load_users(path: Path) -> Users:
    ids, _, features = _entities(path, "user_id", "users", ())
    return Users(ids, features)


def _entities(
    path: Path, id_column: str, what: str, time_columns: tuple[str, ...]
) -> tuple[NDArray[np.str_], NDArray[np.float64], dict[str, list[list[str]]]]:
    """An items or users file: unique ids, an optional creation time, categorical features."""
    header, rows = read_rows(path)
    index = _require(path, header, (id_column,))
    if not rows:
        raise DataError(path, f"no {what} (header only)", row=2)
    feature_columns = [h for h in header if h != id_column and h not in time_columns]
    ids: list[str] = []
    seen: dict[str, int] = {}
    created: list[float] = []
    features: dict[str, list[list[str]]] = {c: [] for c in feature_columns}
    for n, raw in enumerate(rows, start=2):
        if len(raw) != len(header):
            raise DataError(path, f"expected {len(header)} fields, found {len(raw)}", row=n)
        entity = _check_id(path, n, id_column, raw[index[id_column]])
        if entity in seen:
            kind = id_column.removesuffix("_id")
            raise DataError(path, f"duplicate {kind} id {entity!r} (first at row {seen[entity]})", n, id_column)
        seen[entity] = n
        ids.append(entity)
        for column in time_columns:
            if column in index and raw[index[column]].strip():
                try:
                    created.append(parse_time(raw[index[column]]))
                except ValueError:
                    raise DataError(path, f"not a timestamp: {raw[index[column]]!r}", n, column) from None
            else:
                created.append(math.nan)
        for column in feature_columns:
            cell = raw[index[column]].strip()
            features[column].append([v.strip() for v in cell.split("|") if v.strip()] if cell else [])
    return np.array(ids), np.array(created if time_columns else [math.nan] * len(ids)), features


def feature_bags(features: dict[str, list[list[str]]], n: int) -> tuple[list[list[int]], list[str]]:
    """Every feature column as ``column=value`` tokens (``offline.bundle.feature_tokens``):
    per-entity token ids (n lists) and the vocabulary, in first-seen order.

    >>> feature_bags({"genres": [["Comedy", "Drama"], ["Drama"]], "decade": [["1990"], []]}, 2)
    ([[0, 1, 2], [1]], ['genres=Comedy', 'genres=Drama', 'decade=1990'])
    """
    vocab: dict[str, int] = {}
    bags: list[list[int]] = [[] for _ in range(n)]
    for column, values in features.items():
        for bag, cell in zip(bags, values, strict=True):
            bag.extend(vocab.setdefault(f"{column}={v}", len(vocab)) for v in cell)
    return bags, list(vocab)


def split_by_time(data: Interactions, valid_fraction: float) -> tuple[Interactions, Interactions, float]:
    """Train on everything before the ``1 - valid_fraction`` time quantile, validate on the rest.

    Returns (train, valid, split_time). A temporal holdout, not a random one: the model is
    judged on the future it will serve, and items first seen after ``split_time`` are fresh.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction: must be in (0, 1), got {valid_fraction}")
    split = float(np.quantile(data.timestamp, 1.0 - valid_fraction))
    before = data.timestamp < split
    return data.take(before), data.take(~before), split
