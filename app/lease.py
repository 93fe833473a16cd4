"""A replica's serving lease: proof that it told the fleet which bundle version it serves.

Statistics retirement (``streaming.stores.retirable``) deletes a version's namespace only when
no replica has reported it for the grace period plus ``SERVING_LEASE_S``. That is safe only if
a replica never stores a request context (what feedback is joined to) for a version it has not
reported within the lease, so this object is asked before every swap and every context write:

- ``acquire(version)`` reports the version to the store; a swap happens only once it returns
  ``GRANTED`` (``app.recommender.BundleHolder``). ``REFUSED`` means the version is being
  retired: the swap waits for the deletion to end and then starts with empty statistics.
- ``held(version)`` is true for ``lease_s`` after the start of the last report that landed;
  the lease is timed from *before* the report was sent, on the monotonic clock, so a slow
  write can only shorten it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

from streaming import stores
from streaming.stores import Store, StoreUnavailable


class Report(Enum):
    GRANTED = "granted"
    REFUSED = "refused"  # the version is being retired
    UNAVAILABLE = "unavailable"  # the store did not answer


class ServingLease:
    def __init__(
        self,
        store: Store,
        lease_s: float | None = None,  # None: ``streaming.stores.SERVING_LEASE_S``, read when used
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._lease_s = lease_s
        self._wall = wall
        self._clock = clock
        self._granted: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, version: str) -> Report:
        started = self._clock()
        try:
            granted = self._store.heartbeat(version, self._wall())
        except StoreUnavailable:
            return Report.UNAVAILABLE
        if not granted:
            with self._lock:
                self._granted.pop(version, None)
            return Report.REFUSED
        with self._lock:
            self._granted[version] = max(started, self._granted.get(version, started))
        return Report.GRANTED

    def held(self, version: str) -> bool:
        with self._lock:
            granted = self._granted.get(version)
        lease_s = stores.SERVING_LEASE_S if self._lease_s is None else self._lease_s
        return granted is not None and self._clock() - granted <= lease_s
