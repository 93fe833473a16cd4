"""The service's own logs as training data, so that what was served and clicked feeds the next
model (DESIGN flow 4: "files, or the decision + feedback topics").

The ``decisions`` topic carries one ``RequestContext`` per recommendation (who, when, which
items); the ``feedback`` topic carries the events on served items (``streaming/events.py``). The
join gives the contract's interactions file, one row per (request, item) that was **shown**:

================  ===========================================================================
column            value
================  ===========================================================================
user_id           the decision's ``user_id``
item_id           the served item
timestamp         the decision's time (epoch seconds): the temporal split is by serving time
reward            1 if the item was clicked or got a reward event with value > 0, else 0
explore_coin      1 if the request's explore coin came up explore, else 0
explore_p         the coin's probability of exploring when it was served (the surface's
                  ``explore_traffic``), -1 where no coin was tossed (a degraded response) or
                  the decision predates the field: the propensity for off-policy estimates
                  (``bandits/whatif.py``)
position          the slot the item was served in (0 = top), -1 where the decision has none
arm               the experiment arm that served the request (``app/experiments.py``:
                  ``<experiment id>/<arm>``), empty outside any experiment
================  ===========================================================================

The trainer reads the contract's columns by name (``offline.data.load_interactions``) and
ignores the last four; they are there so that an offline evaluation of another
``explore_traffic``, a position model or an experiment's arms can run on the same export.

Shown means an impression, click or reward event arrived for the item (a click implies its
impression, as in the consumer). Served items without any event are not rows: the client may
never have displayed them. Surfaces that count served items as impressions get them anyway,
because the service then emits those impression events itself. These rows are real negatives,
so the teacher learns from logged impressions instead of sampled ones.

Events whose request is not in the decision log (expired before the export window, or never
served) and decisions without a ``user_id`` (logged before it was recorded) are counted and
skipped. The join holds one window of the decision log in memory: export a bounded window.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from offline.data import DataError, read_rows
from streaming.bus import Bus, read_to_end
from streaming.catalogue import ItemRecord
from streaming.events import EventError, FeedbackEvent, RequestContext, decode_decisions

HEADER = ("user_id", "item_id", "timestamp", "reward", "explore_coin", "explore_p", "position", "arm")


class LogRow(NamedTuple):
    """One shown (request, item): the columns of ``HEADER``."""

    user_id: str
    item_id: str
    timestamp: float
    reward: float
    explore_coin: bool
    explore_p: float
    position: int = -1
    arm: str = ""


@dataclass(frozen=True)
class LogJoin:
    """The joined rows and what was skipped, and why."""

    rows: list[LogRow]
    decisions: int
    events: int
    unknown_request: int  # events whose decision is not in the log (or not for that item)
    anonymous: int  # decisions without a user_id
    malformed: int  # records that did not decode

    def summary(self) -> dict[str, int]:
        return {
            "rows": len(self.rows),
            "decisions": self.decisions,
            "events": self.events,
            "unknown_request": self.unknown_request,
            "anonymous": self.anonymous,
            "malformed": self.malformed,
        }


def join_logs(decisions: Iterable[bytes], feedback: Iterable[bytes]) -> LogJoin:
    """Join decision records and feedback events (raw topic values) into interaction rows.

    >>> shown = {"a": (0.1, False), "b": (0.2, True)}  # item -> (prior, explored)
    >>> ctx = RequestContext("r1", "default", "v1", [0], [1.0], shown, 10.0, user_id="u",
    ...                      explore_coin=True, explore_p=0.05)
    >>> ev = FeedbackEvent("e1", "r1", "b", "click", 1.0, 11.0)
    >>> row, = join_logs([ctx.encode()], [ev.encode()]).rows
    >>> row.user_id, row.item_id, row.reward, row.explore_coin, row.explore_p, row.position, row.arm
    ('u', 'b', 1.0, True, 0.05, -1, '')
    """
    served: dict[str, RequestContext] = {}
    malformed = anonymous = 0
    n_decisions = 0
    for value in decisions:
        try:
            # A record holds one decision or several (streaming/events.py, merge_decisions).
            found = decode_decisions(value)
        except (ValueError, KeyError, TypeError):
            n_decisions += 1
            malformed += 1
            continue
        n_decisions += len(found)
        for decision in found:
            if not decision.user_id:
                anonymous += 1
                continue
            served[decision.request_id] = decision
    shown: dict[tuple[str, str], float] = {}
    unknown = n_events = 0
    for value in feedback:
        n_events += 1
        try:
            event = FeedbackEvent.decode(value)
        except EventError:
            malformed += 1
            continue
        ctx = served.get(event.request_id)
        if ctx is None or event.item_id not in ctx.items:
            unknown += 1
            continue
        positive = event.type == "click" or (event.type == "reward" and event.value > 0)
        key = (event.request_id, event.item_id)
        shown[key] = max(shown.get(key, 0.0), 1.0 if positive else 0.0)
    rows = sorted(
        (
            LogRow(
                served[r].user_id,
                item,
                served[r].ts,
                reward,
                served[r].explore_coin,
                served[r].explore_p,
                served[r].positions.get(item, -1),
                served[r].arm,
            )
            for (r, item), reward in shown.items()
        ),
        key=lambda row: (row.timestamp, row.user_id, row.item_id),
    )
    return LogJoin(rows, n_decisions, n_events, unknown, anonymous, malformed)


def write_interactions(rows: Iterable[LogRow], path: Path) -> Path:
    """Write rows in the contract's columns, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows((u, i, repr(t), repr(r), int(x), repr(p), k, a) for u, i, t, r, x, p, k, a in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_logs(bus: Bus, decisions_topic: str, feedback_topic: str, out: Path) -> LogJoin:
    """Read both topics from the beginning to their current end, join, and write ``out``."""
    decisions = [r.value for r in read_to_end(bus, decisions_topic)]
    joined = join_logs(decisions, (r.value for r in read_to_end(bus, feedback_topic)))
    if not joined.rows:
        raise ValueError(f"{decisions_topic} + {feedback_topic}: no shown items to train on ({joined.summary()})")
    write_interactions(joined.rows, out)
    return joined


@dataclass(frozen=True)
class CatalogueMerge:
    """What the items topic added to an items file (``merge_catalogue``)."""

    path: Path
    added: int  # published since: new rows
    changed: int  # rows whose features the topic replaced
    deleted: int  # taken down: kept as rows (logged interactions may name them), never served
    ignored_columns: int  # feature columns the file does not have, dropped

    def summary(self) -> dict[str, int]:
        return {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "ignored_columns": self.ignored_columns,
        }


def _text(value: str | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # as the file would write it, so that its tokens match
    return str(value)


def merge_catalogue(items: Path, records: Iterable[ItemRecord], out: Path) -> CatalogueMerge:
    """The items file with the live catalogue's latest record per item applied: a published item
    becomes a row (its features replace the row's: ``PUT`` replaces), a taken-down one keeps
    its row. So the next offline run trains on items published since the last one like any
    other item, and serving's take-down still holds for those in the new bundle
    (``app/catalogue.py``). Columns stay the file's, plus ``created_at`` if the file has none.
    """
    latest: dict[str, ItemRecord] = {}
    for record in records:
        if record.item_id not in latest or record.ts > latest[record.item_id].ts:
            latest[record.item_id] = record
    header, rows = read_rows(items)
    if "item_id" not in header:
        raise DataError(items, "missing column(s) item_id", row=1)
    if "created_at" not in header:
        header = [*header, "created_at"]
        rows = [[*r, ""] for r in rows]
    col = {name: i for i, name in enumerate(header)}
    features = [h for h in header if h not in ("item_id", "created_at")]
    at = {r[col["item_id"]].strip(): n for n, r in enumerate(rows)}
    added = changed = deleted = ignored = 0
    for item, record in sorted(latest.items()):
        if record.deleted:
            deleted += item in at
            continue
        ignored += len(set(record.features) - set(features))
        if item in at:
            row = rows[at[item]]
            changed += 1
        else:
            row = [""] * len(header)
            row[col["item_id"]] = item
            row[col["created_at"]] = repr(record.created_at)
            rows.append(row)
            added += 1
        for column in features:
            row[col[column]] = _text(record.features.get(column, ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return CatalogueMerge(out, added, changed, deleted, ignored)


def export_catalogue(bus: Bus, items_topic: str, items: Path, out: Path) -> CatalogueMerge:
    """Read the items topic from the beginning to its current end and merge it into ``items``;
    records that do not decode are skipped (the topic is shared with external publishers)."""
    records = []
    for r in read_to_end(bus, items_topic):
        try:
            records.append(ItemRecord.decode(r.value))
        except EventError:
            continue
    return merge_catalogue(items, records, out)
