"""A replica's view of the live catalogue (``streaming/catalogue.py``): what was taken down, and
the items published since the serving bundle, embedded and placed in the candidate graph.

Freshness. Every request's statistics read returns the catalogue's sequence number
(``Store.gather_live``); when it moved, the replica catches up (``items_since``, one round trip)
before it picks the slate, and drops what was taken down. So a take-down acknowledged by any
replica holds on every replica from the next request on, and a published item is servable on
the request after that. A background refresh twice a second covers idle replicas and keeps the
last view while the store is down (the response then says it is degraded).

A new item is what the offline job would export for an item without interactions: the item
tower's content part on its features (``offline.bundle.item_from_features``), and its prior the
student's on that embedding, calibrated like any other (popularity group "rest"). It joins the
candidate graph where a bundle item with that embedding would (its similarity to a cluster's
centroid reaches the lowest of that cluster's graph row), and the fresh pool, where new items
get half of each request's fresh draw (``candidates``). An item the bundle already has keeps
its trained embedding: a change of its features reaches serving through the next offline run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import structlog

from bandits.checks import FloatArray, IntArray
from offline.bundle import Bundle, item_from_features
from streaming.bus import Message, Producer
from streaming.catalogue import FeatureValue, ItemRecord, check_features
from streaming.events import EventError, check_id
from streaming.stores import Store, StoreUnavailable

log = structlog.get_logger(__name__)

PAGE = 1000  # records per items_since call
REFRESH_S = 0.5
# How far in the future an item's created_at may lie (clock skew between publisher and service).
MAX_FUTURE_S = 86_400.0


class ChangeConflict(RuntimeError):
    """Another change of the same item landed first; the caller retries."""


class NotApplied(RuntimeError):
    """The change is on the items topic, but the store did not take it yet: it applies when the
    consumers' follower reaches it (``streaming.catalogue.follow_items``)."""


@dataclass(frozen=True)
class LiveView:
    """The catalogue as one bundle version serves it.

    Attributes
    ----------
    deleted : ids taken down (in the bundle or not)
    ids : (L,) live items the bundle does not have, newest first
    emb : (L, dim) their embeddings
    created : (L,) their creation times, epoch seconds
    by_cluster : cluster → indices into ``ids`` of the live items its graph row takes
    index : id → its index in ``ids``
    """

    version: str
    seq: int
    deleted: frozenset[str]
    ids: list[str]
    emb: FloatArray
    created: FloatArray
    by_cluster: dict[int, IntArray] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def candidates(self, clusters: IntArray, fresh: int, rng: np.random.Generator) -> IntArray:
        """Indices into ``ids`` for a request in ``clusters``: the live items their graph rows
        take, and ``fresh`` drawn at random (the fresh pool's share for items without evidence).

        >>> view = LiveView("v", 1, frozenset(), ["a", "b", "c"], np.zeros((3, 2)), np.zeros(3),
        ...                 {0: np.array([2])})
        >>> view.candidates(np.array([0, 1]), 0, np.random.default_rng(0)).tolist()
        [2]
        >>> len(view.candidates(np.array([1]), 2, np.random.default_rng(0)))
        2
        """
        parts = [self.by_cluster[c] for c in clusters.tolist() if c in self.by_cluster]
        n = min(fresh, len(self.ids))
        if n:
            parts.append(rng.choice(len(self.ids), size=n, replace=False).astype(np.int64))
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def graph_thresholds(bundle: Bundle) -> FloatArray:
    """Per cluster (C,), the lowest centroid similarity among the items of its graph row: an
    item at least as similar would have been in the row.

    >>> import types
    >>> b = types.SimpleNamespace(arrays={"centroids": np.eye(2), "graph": np.array([[0, 1]]),
    ...     "item_emb": np.array([[0.9, 0.1], [0.5, 0.5]])})
    >>> graph_thresholds(b).tolist()
    [0.5]
    """
    a = bundle.arrays
    graph = np.asarray(a["graph"], dtype=np.int64)
    if graph.size == 0:
        return np.full(len(a["centroids"]), np.inf)
    sims = np.einsum("cd,cwd->cw", np.asarray(a["centroids"][: len(graph)], np.float64), a["item_emb"][graph])
    return np.asarray(sims.min(axis=1), dtype=np.float64)


class LiveCatalogue:
    """Records by item, caught up from the store; one ``LiveView`` per (version, seq), built on
    first use and kept until the catalogue or the bundle moves."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._records: dict[str, ItemRecord] = {}
        self._seq = 0
        self._view: LiveView | None = None
        self._thresholds: tuple[str, FloatArray] | None = None
        # (item, ts) → embedding, for the version in _embedded_for: a view is rebuilt on every
        # change, and embedding every live item again each time would grow with the catalogue.
        self._embedded: dict[tuple[str, float], FloatArray | None] = {}
        self._embedded_for = ""
        self.stale = False  # the last refresh failed: the view may miss recent changes

    @property
    def seq(self) -> int:
        return self._seq

    def refresh(self) -> bool:
        """Read what changed since the last refresh; True if anything did. Never raises: a
        store that does not answer leaves the last view (``stale``)."""
        changed = False
        with self._lock:
            try:
                while True:
                    page, head = self._store.items_since(self._seq, PAGE)
                    for seq, raw in page:
                        try:
                            record = ItemRecord.decode(raw)
                        except EventError as exc:  # written by an older or foreign writer
                            log.warning("item_record_unreadable", seq=seq, error=str(exc))
                        else:
                            self._records[record.item_id] = record
                        self._seq = max(self._seq, seq)
                        changed = True
                    if not page or self._seq >= head:
                        break
                self.stale = False
            except StoreUnavailable:
                self.stale = True
        return changed

    def observe(self, seq: int) -> None:
        """A request saw the store at catalogue sequence ``seq``: catch up if it is ahead."""
        if seq > self._seq:
            self.refresh()

    def view(self, bundle: Bundle) -> LiveView:
        view = self._view
        if view is not None and view.version == bundle.version and view.seq == self._seq:
            return view
        with self._lock:
            view = self._build(bundle)
            self._view = view
        return view

    def _build(self, bundle: Bundle) -> LiveView:
        records = list(self._records.values())
        deleted = frozenset(r.item_id for r in records if r.deleted)
        new = [r for r in records if not r.deleted and r.item_id not in bundle.item_index]
        new.sort(key=lambda r: (-r.created_at, r.item_id))
        dim = int(bundle.arrays["item_emb"].shape[1])
        if self._embedded_for != bundle.version:
            self._embedded, self._embedded_for = {}, bundle.version
        rows = []
        for r in new:
            key = (r.item_id, r.ts)
            if key not in self._embedded:
                self._embedded[key] = item_from_features(bundle, r.features)
            rows.append(self._embedded[key])
        if len(self._embedded) > 2 * len(new) + 1000:  # drop replaced and published-then-trained items
            live = {(r.item_id, r.ts) for r in new}
            self._embedded = {k: v for k, v in self._embedded.items() if k in live}
        # A bundle without an item tower cannot embed a new item: it is served as unknown.
        kept = [(r, v) for r, v in zip(new, rows, strict=True) if v is not None]
        ids = [r.item_id for r, _ in kept]
        emb = np.array([v for _, v in kept], dtype=np.float64).reshape(len(kept), dim)
        created = np.array([r.created_at for r, _ in kept], dtype=np.float64)
        by_cluster: dict[int, IntArray] = {}
        if kept:
            if self._thresholds is None or self._thresholds[0] != bundle.version:
                self._thresholds = (bundle.version, graph_thresholds(bundle))
            thresholds = self._thresholds[1]
            centroids = np.asarray(bundle.arrays["centroids"][: len(thresholds)], dtype=np.float64)
            member = (emb @ centroids.T) >= thresholds[None, :]
            for c in np.flatnonzero(member.any(axis=0)).tolist():
                by_cluster[c] = np.flatnonzero(member[:, c]).astype(np.int64)
        index = {item: i for i, item in enumerate(ids)}
        return LiveView(bundle.version, self._seq, deleted, ids, emb, created, by_cluster, index)

    def run(self, stop: threading.Event) -> None:
        """The background refresh (a thread of the serving process)."""
        self.refresh()
        while not stop.wait(REFRESH_S):
            self.refresh()


@dataclass(frozen=True)
class ItemState:
    """An item as the catalogue serves it: ``state`` is ``bundle`` (the serving bundle has it),
    ``live`` (published since), ``deleted`` (taken down) or ``unknown``."""

    item_id: str
    state: str
    seq: int
    record: ItemRecord | None


class CatalogueEditor:
    """``PUT``/``DELETE /v1/items/{item_id}``: a change goes to the items topic first (the
    durable log: acknowledged means it survives a lost Redis), then to the store (what every
    replica reads: acknowledged means every replica serves it from its next request)."""

    def __init__(
        self, store: Store, producer: Producer, catalogue: LiveCatalogue, topic: str, timeout_s: float
    ) -> None:
        self._store = store
        self._producer = producer
        self._catalogue = catalogue
        self._topic = topic
        self._timeout_s = timeout_s

    def publish(
        self, bundle: Bundle, item_id: str, features: dict[str, object], created_at: float | None, by: str
    ) -> ItemState:
        """Publish or change an item. ``EventError`` names a bad field; nothing is half-applied:
        every check runs before the first write."""
        check_id("item_id", item_id)
        checked: dict[str, FeatureValue] = check_features(features, bundle.item_feature_columns)
        now = time.time()
        if created_at is not None and not 0.0 <= created_at <= now + MAX_FUTURE_S:
            raise EventError("created_at: must be epoch seconds, not before 1970 nor more than a day ahead")
        previous = self._previous(item_id)
        if created_at is None:
            row = bundle.item_index.get(item_id)
            if row is not None:
                created_at = float(bundle.arrays["item_created"][row])
            elif previous is not None and not previous.deleted:
                created_at = previous.created_at
            else:
                created_at = now
        return self._write(ItemRecord(item_id, checked, created_at, False, self._ts(previous, now), by), bundle)

    def take_down(self, bundle: Bundle, item_id: str, by: str) -> ItemState:
        """Take an item down, whether the bundle has it, it was published, or neither yet (a
        later bundle may bring it): from the acknowledgement on, no replica serves it."""
        check_id("item_id", item_id)
        previous = self._previous(item_id)
        now = time.time()
        created = previous.created_at if previous is not None else now
        return self._write(ItemRecord(item_id, {}, created, True, self._ts(previous, now), by), bundle)

    def state(self, bundle: Bundle, item_id: str) -> ItemState:
        return self._state_of(bundle, item_id, self._previous(item_id))

    def _state_of(self, bundle: Bundle, item_id: str, record: ItemRecord | None) -> ItemState:
        if record is not None and record.deleted:
            state = "deleted"
        elif item_id in bundle.item_index:
            state = "bundle"
        else:
            state = "live" if record is not None else "unknown"
        return ItemState(item_id, state, self._catalogue.seq, record)

    def _previous(self, item_id: str) -> ItemRecord | None:
        raw = self._store.get_item(item_id)  # StoreUnavailable: nothing written yet
        return None if raw is None else ItemRecord.decode(raw)

    @staticmethod
    def _ts(previous: ItemRecord | None, now: float) -> float:
        # Later than the stored change even if this replica's clock is behind the one that wrote it.
        return max(now, previous.ts + 1e-3) if previous is not None else now

    def _write(self, record: ItemRecord, bundle: Bundle) -> ItemState:
        raw = record.encode()
        self._producer.send_and_wait([Message(self._topic, record.item_id.encode(), raw)], self._timeout_s)
        try:
            seq = self._store.put_item(record.item_id, record.ts, raw)
        except StoreUnavailable as exc:
            raise NotApplied(record.item_id) from exc
        if seq is None:
            # A newer change won in the store. Compaction keeps a key's latest offset, which is
            # now this loser's: log the winner again so that a replay of the compacted topic
            # ends where the store is.
            winner = self._store.get_item(record.item_id)
            if winner is not None:
                self._producer.send_and_wait([Message(self._topic, record.item_id.encode(), winner)], self._timeout_s)
            raise ChangeConflict(record.item_id)
        self._catalogue.refresh()
        return self._state_of(bundle, record.item_id, record)  # what was just stored: no second read
