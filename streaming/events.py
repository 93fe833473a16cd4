"""Event and record schemas carried on Kafka, and their JSON codec.

Topics
------
============  ===========  =====================================================================
topic         key          value
============  ===========  =====================================================================
feedback      item_id      ``FeedbackEvent`` JSON: one user action on one served item
decisions     request_id   ``RequestContext`` JSON: what was served and why (also the join side);
                           or a JSON array of them (``merge_decisions``), keyed by the first
dead-letter   item_id      the feedback event plus ``reason`` (``unknown_request``)
items         item_id      ``streaming.catalogue.ItemRecord`` JSON: the live catalogue, compacted;
                           a take-down is a record with ``deleted`` true, never a null tombstone
============  ===========  =====================================================================

Feedback is keyed by ``item_id`` so that every event of an item lands in one partition: one
consumer owns an item's statistics at a time, and its per-partition watermark is meaningful.

Decision records come in two forms, and every reader takes both (``decode_decisions``): one
context per record (what the embedded bus and earlier releases write), or several merged into
one array by the Kafka producer's drain (``merge_decisions``; a send per record cost a sixth of
a request's CPU). Readers key decisions by ``request_id``, never by record, key or offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson

EventType = Literal["impression", "click", "reward"]
EVENT_TYPES: tuple[str, ...] = ("impression", "click", "reward")
MAX_ID_LENGTH = 256


class EventError(ValueError):
    """A malformed event; the message names the field."""


RESERVED_PREFIX = "~om:"  # ids of the service's own pseudo-items; refused from callers


def check_key_part(field: str, value: object) -> str:
    """An id that may become part of a Redis key: a non-empty string, not too long, without
    braces (they would become Redis Cluster hash tags)."""
    if not isinstance(value, str) or not value:
        raise EventError(f"{field}: must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"{field}: longer than {MAX_ID_LENGTH} characters")
    if "{" in value or "}" in value:
        raise EventError(f"{field}: braces are not allowed")
    return value


def check_id(field: str, value: object) -> str:
    """A caller's id: a key part that is not one of the service's reserved pseudo-ids."""
    checked = check_key_part(field, value)
    if checked.startswith(RESERVED_PREFIX):
        raise EventError(f"{field}: ids starting with {RESERVED_PREFIX!r} are reserved")
    return checked


def calibration_item(surface: str) -> str:
    """The pseudo-item whose statistics hold a surface's calibration (``bandits/calibration.py``):
    coordinate = bin, ``w2`` = exposure, ``b`` = clicks. The reserved prefix keeps it apart
    from every real item id."""
    return f"{RESERVED_PREFIX}calibration:{surface}"


def examination_item(surface: str) -> str:
    """The pseudo-item counting a surface's randomised slates (``bandits.position``):
    coordinate = position, ``w2`` = impressions, ``b`` = clicks."""
    return f"{RESERVED_PREFIX}examination:{surface}"


@dataclass(frozen=True)
class FeedbackEvent:
    """One user action: ``type`` is impression, click or reward (``value`` is the reward).

    ``position`` (optional, from 0) is where the client really showed the item, for clients
    that re-order a slate; the examination weight then comes from the curve stored with the
    request (``RequestContext.curve``) instead of the served slot's.
    """

    event_id: str
    request_id: str
    item_id: str
    type: EventType
    value: float
    ts: float
    position: int | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FeedbackEvent:
        kind = raw.get("type")
        if kind not in EVENT_TYPES:
            raise EventError(f"type: must be one of {', '.join(EVENT_TYPES)}, got {kind!r}")
        value = raw.get("value", 1.0 if kind == "click" else 0.0)
        ts = raw.get("ts", 0.0)
        for name, number in (("value", value), ("ts", ts)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                raise EventError(f"{name}: must be a finite number")
        position = raw.get("position")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise EventError("position: must be an integer >= 0")
        # Through ``__dict__``, as ``RequestContext.from_dict``: the consumer parses every event
        # it polls, and the frozen ``__init__``'s ``object.__setattr__`` per field was a fifth of that.
        ev = object.__new__(cls)
        ev.__dict__.update(
            event_id=check_id("event_id", raw.get("event_id")),
            request_id=check_id("request_id", raw.get("request_id")),
            item_id=check_id("item_id", raw.get("item_id")),
            type=kind,
            value=float(value),
            ts=float(ts),
            position=position,
        )
        return ev

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def decode(cls, data: bytes) -> FeedbackEvent:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise EventError(f"event: not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise EventError("event: must be a JSON object")
        return cls.parse(raw)


def arm_namespace(version: str, arm: str) -> str:
    """The statistics namespace of an experiment arm (``app/experiments.py``) under a bundle
    version: a version of its own to every store, retired like one.

    >>> arm_namespace("v7", "alpha0-3fa2c1/control")
    'v7@alpha0-3fa2c1/control'
    """
    return f"{version}@{arm}"


def arm_stats_key(surface: str, arm: str) -> str:
    """The operator counters' surface of an experiment arm (no surface name holds ``@``).

    >>> arm_stats_key("home", "alpha0-3fa2c1/control")
    'home@alpha0-3fa2c1/control'
    """
    return f"{surface}@{arm}"


def _bounds(value: object) -> tuple[float, float]:
    """A context's reward bounds, a ``[lo, hi]`` pair as ``encode`` writes it."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise EventError(f"rewards: must be a [lo, hi] pair, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class RequestContext:
    """What a recommendation served, stored under ``request_id`` for the attribution window.

    ``indices``/``weights`` are the sparse context (K,), ``items`` maps each served item to its
    logged prior ``p`` and whether it was explored. The prior is on the top-slot click scale
    (``bandits/calibration.py``) when ``raw`` holds the offline score it was calibrated from.
    ``positions`` holds each item's slot (0 = top) and ``exam`` the examination weight of that
    slot, fixed when the slate is served, so that applying, rebuilding and replaying give the
    same sums whatever the curve estimate is later. With ``learn`` False (the surface's
    calibration had too little traffic yet) feedback on it only teaches the calibration.
    """

    request_id: str
    surface: str
    version: str
    indices: list[int]
    weights: list[float]
    items: dict[str, tuple[float, bool]]
    ts: float
    # Age in seconds of each served item at serving time (operator stats: age buckets, fresh items).
    ages: dict[str, float] = field(default_factory=dict)
    # Who was served: the offline job trains the next model on the decision log (offline/logs.py).
    user_id: str = ""
    positions: dict[str, int] = field(default_factory=dict)
    exam: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    learn: bool = True
    # The slate's order was drawn uniformly at random (bandits.position.examination_curve).
    randomized: bool = False
    # The examination curve (k,) the weights in ``exam`` came from, for events naming a position.
    curve: list[float] = field(default_factory=list)
    # The pool coordinate among ``indices`` (bandits/pooled.py), -1 without pooling: the
    # consumer ranks trending items by it.
    pool: int = -1
    # Popularity group of each served item whose group is not 0 (bandits.calibration): which of
    # the calibration's maps its raw prior went through.
    groups: dict[str, int] = field(default_factory=dict)
    # The surface's reward bounds when it was served: the consumer clips every reward to them,
    # so no event can teach more than the surface allows (its settings may change later).
    rewards: tuple[float, float] = (0.0, 1.0)
    # The explore coin (the only randomisation of a slate given the statistics): its outcome,
    # and the probability ``explore_p`` (the surface's ``explore_traffic`` then) that it would
    # come up explore. ``explore_p`` is -1 when no coin was tossed (a degraded response never
    # explores), so off-policy estimates (bandits/whatif.py) leave such requests out.
    explore_coin: bool = False
    explore_p: float = -1.0
    # The experiment arm that served it (``app/experiments.py``: ``<experiment id>/<arm>``), empty
    # outside any experiment. Its statistics live in the arm's namespace (``namespace``).
    arm: str = ""

    @cached_property  # read per event in the consumer loop: the string is built once
    def namespace(self) -> str:
        """The statistics namespace its feedback goes to: the bundle version, or the arm's."""
        return arm_namespace(self.version, self.arm) if self.arm else self.version

    @cached_property
    def counter_surfaces(self) -> tuple[str, ...]:
        """The operator counters' surfaces it counts under: its surface, and its arm's."""
        return (self.surface, arm_stats_key(self.surface, self.arm)) if self.arm else (self.surface,)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "surface": self.surface,
                "version": self.version,
                "indices": self.indices,
                "weights": self.weights,
                "items": {k: [p, e] for k, (p, e) in self.items.items()},
                "ts": self.ts,
                "ages": self.ages,
                "user_id": self.user_id,
                "positions": self.positions,
                "exam": self.exam,
                "raw": self.raw,
                "learn": self.learn,
                "randomized": self.randomized,
                "curve": self.curve,
                "pool": self.pool,
                "groups": self.groups,
                "rewards": list(self.rewards),
                "explore_coin": self.explore_coin,
                "explore_p": self.explore_p,
                "arm": self.arm,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RequestContext:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RequestContext:
        """A context from ``encode``'s JSON object, decoded. The per-item maps and lists are taken
        as orjson gives them, without a conversion per element: ``encode`` wrote floats and ints
        that decode as such, and the consumer decodes every context a batch joins (element by
        element, this was a quarter of its CPU in bench-consume).

        The instance is filled in through its ``__dict__`` rather than the dataclass ``__init__``:
        a frozen dataclass sets each of its 21 fields with ``object.__setattr__``, and that, with
        the first read of ``namespace`` and ``counter_surfaces`` (``cached_property`` takes a lock
        on Python 3.11), was half of a decode (bench-consume's py-spy profile). The values are the
        ones ``__init__`` would get; ``RequestContext`` has no ``__post_init__`` to skip, and the
        two cached properties are stored as ``cached_property`` would store them.

        >>> ctx = RequestContext("r1", "home", "v1", [2], [1.0], {"a": (0.2, False)}, 0.0, arm="x/y")
        >>> back = RequestContext.decode(ctx.encode())
        >>> back == ctx, back.namespace, back.counter_surfaces
        (True, 'v1@x/y', ('home', 'home@x/y'))
        """
        surface, version, arm = raw["surface"], raw["version"], str(raw.get("arm", ""))
        ctx = object.__new__(cls)
        ctx.__dict__.update(
            request_id=raw["request_id"],
            surface=surface,
            version=version,
            indices=raw["indices"],
            weights=raw["weights"],
            items={k: (v[0], v[1]) for k, v in raw["items"].items()},
            ts=float(raw["ts"]),
            ages=raw.get("ages", {}),
            user_id=str(raw.get("user_id", "")),
            positions=raw.get("positions", {}),
            exam=raw.get("exam", {}),
            raw=raw.get("raw", {}),
            learn=bool(raw.get("learn", True)),
            randomized=bool(raw.get("randomized", False)),
            curve=raw.get("curve", []),
            pool=int(raw.get("pool", -1)),
            groups=raw.get("groups", {}),
            rewards=_bounds(raw.get("rewards", (0.0, 1.0))),
            explore_coin=bool(raw.get("explore_coin", False)),
            explore_p=float(raw.get("explore_p", -1.0)),
            arm=arm,
            namespace=arm_namespace(version, arm) if arm else version,
            counter_surfaces=(surface, arm_stats_key(surface, arm)) if arm else (surface,),
        )
        return ctx


def merge_decisions(values: Sequence[bytes]) -> bytes:
    """One decision record value of several (each a ``RequestContext.encode`` object, or an
    array this made before: a merged record may be queued again to be resent).

    >>> merge_decisions([b'{"a":1}', b'[{"b":2},{"c":3}]'])
    b'[{"a":1},{"b":2},{"c":3}]'
    """
    parts = [v[1:-1] if v[:1] == b"[" else v for v in values]
    return b"[" + b",".join(p for p in parts if p) + b"]"


def decode_decisions(value: bytes) -> list[RequestContext]:
    """The contexts of one decision record value, in either form (see the module docstring).
    Raises ``EventError`` for a value that is not JSON, ``KeyError``/``TypeError``/``ValueError``
    for one whose fields are wrong."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"decision: not JSON ({exc})") from exc
    return [RequestContext.from_dict(r) for r in (raw if isinstance(raw, list) else [raw])]
