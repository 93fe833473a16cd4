"""The live catalogue: items added, changed and taken down between two offline runs.

A catalogue change is an ``ItemRecord``. It lives in two places, each for its own reason:

- the ``items`` topic (key ``item_id``, **compacted**): the durable log. External publishers
  write to it directly, ``PUT``/``DELETE /v1/items/{item_id}`` write to it first, and a consumer
  process replays it from the beginning every time it starts (``follow_items``), so the
  catalogue survives a lost Redis and a restart. A take-down is a record with ``deleted`` true,
  never a Kafka null tombstone: compaction keeps the latest record of every key, so a deletion
  survives compaction and replay, where a null value would be dropped after
  ``delete.retention.ms`` and the item would come back on the next replay.
- the statistics store (``Store.put_item``): what every replica reads. Each accepted change
  takes the next catalogue sequence number; a replica reads that number with every request's
  statistics (``Store.gather_live``, no extra round trip) and catches up when it moved, so a
  take-down acknowledged on one replica holds on every replica from the next request on.

Changes are applied last-writer-wins on ``ts`` (the time the change was accepted), so a replay
of the topic, which holds older records of a key before its latest, never brings back a state
that a later change replaced, and applying the same record twice changes nothing.

Pure data and validation; the store and the bus come in as interfaces.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
import structlog

from streaming.bus import Bus
from streaming.events import EventError, check_id
from streaming.stores import Store

log = structlog.get_logger(__name__)

MAX_COLUMNS = 32
MAX_VALUES = 64  # ``|``-separated values of one categorical column
MAX_VALUE_LENGTH = 1000
FOLLOW_POLL_S = 0.5

FeatureValue = str | float


@dataclass(frozen=True)
class ItemRecord:
    """One catalogue change. ``features`` as in the offline items file (a categorical column's
    values joined by ``|``); ``created_at`` epoch seconds; ``ts`` when the change was accepted
    (the last-writer-wins order); ``by`` who made it (the token's role)."""

    item_id: str
    features: dict[str, FeatureValue] = field(default_factory=dict)
    created_at: float = 0.0
    deleted: bool = False
    ts: float = 0.0
    by: str = ""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "item_id": self.item_id,
                "features": self.features,
                "created_at": self.created_at,
                "deleted": self.deleted,
                "ts": self.ts,
                "by": self.by,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def decode(cls, raw: bytes) -> ItemRecord:
        """Parse and validate a record from the topic or the store; ``EventError`` names the field."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventError(f"item record: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise EventError("item record: must be a JSON object")
        item_id = check_id("item_id", data.get("item_id"))
        deleted = data.get("deleted", False)
        if not isinstance(deleted, bool):
            raise EventError("deleted: must be true or false")
        return cls(
            item_id=item_id,
            features={} if deleted else check_features(data.get("features", {})),
            created_at=_finite("created_at", data.get("created_at", 0.0)),
            deleted=deleted,
            ts=_finite("ts", data.get("ts", 0.0)),
            by=str(data.get("by", ""))[:64],
        )


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EventError(f"{name}: must be a finite number")
    return float(value)


def check_features(features: object, columns: frozenset[str] = frozenset()) -> dict[str, FeatureValue]:
    """An item's features, bounded: at most ``MAX_COLUMNS`` columns, each a finite number or a
    string of at most ``MAX_VALUES`` ``|``-separated values and ``MAX_VALUE_LENGTH`` characters.
    With ``columns`` (the serving bundle's item feature columns), any other column is refused:
    the item tower has never seen it, so it would be silently ignored.

    >>> check_features({"genres": "Comedy|Drama", "year": 1995})
    {'genres': 'Comedy|Drama', 'year': 1995.0}
    >>> check_features({"colour": "red"}, frozenset({"genres"}))
    Traceback (most recent call last):
    ...
    streaming.events.EventError: features.colour: unknown feature column (known: genres)
    """
    if not isinstance(features, dict):
        raise EventError("features: must be an object of column → value")
    if len(features) > MAX_COLUMNS:
        raise EventError(f"features: at most {MAX_COLUMNS} columns, got {len(features)}")
    out: dict[str, FeatureValue] = {}
    for column, value in features.items():
        name = f"features.{column}"
        if not isinstance(column, str) or not column or len(column) > 64 or "=" in column:
            raise EventError(f"{name}: a column name is 1 to 64 characters without '='")
        if columns and column not in columns:
            raise EventError(f"{name}: unknown feature column (known: {', '.join(sorted(columns))})")
        if isinstance(value, str):
            if len(value) > MAX_VALUE_LENGTH:
                raise EventError(f"{name}: longer than {MAX_VALUE_LENGTH} characters")
            if value.count("|") >= MAX_VALUES:
                raise EventError(f"{name}: at most {MAX_VALUES} '|'-separated values")
            out[column] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[column] = float(value)
        else:
            raise EventError(f"{name}: must be a finite number or a string")
    return out


def apply_records(store: Store, raws: Iterable[bytes]) -> tuple[int, int]:
    """Apply records from the topic to the store, last writer wins; (landed, refused), where a
    record landed if it is now the store's latest for its item (newly, or already was).

    A record that does not parse is refused and logged (the topic is shared with external
    publishers); one that is older than the store's is not an error, it is simply not newer.
    """
    landed = refused = 0
    for raw in raws:
        try:
            record = ItemRecord.decode(raw)
        except EventError as exc:
            refused += 1
            log.warning("item_record_refused", error=str(exc))
            continue
        if store.put_item(record.item_id, record.ts, record.encode()) is not None:
            landed += 1
    return landed, refused


def follow_items(
    bus: Bus,
    store: Store,
    topic: str,
    stop: threading.Event,
    on_error: Callable[[str], None] = lambda _: None,
) -> None:
    """Replay ``topic`` into the store from its beginning, then keep following it.

    A consumer group of its own that never commits, so every start reads the whole (compacted)
    topic: a store that lost its catalogue gets it back from the log. Applying is idempotent and
    last-writer-wins, so several consumer processes may all follow, and what the HTTP edge
    applied already is not applied again. Records that do not apply because the store is down
    are read again by a new follower (the store is retried, the topic re-read from the start).
    """
    while not stop.is_set():
        consumer = bus.consumer(f"onlinematch-items-{uuid.uuid4().hex}", [topic])
        try:
            while not stop.is_set():
                records = consumer.poll(1000, FOLLOW_POLL_S)
                if records:
                    landed, refused = apply_records(store, [r.value for r in records])
                    log.info("items_followed", read=len(records), landed=landed, refused=refused)
        except Exception as exc:  # any client or store error: the follower outlives it and starts over
            on_error(type(exc).__name__)
            log.warning("items_follow_failed", error=type(exc).__name__)
            stop.wait(FOLLOW_POLL_S)
        finally:
            consumer.close()
