"""Request and response models of the HTTP contract (DESIGN.md, "Public contract")."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from streaming.catalogue import MAX_COLUMNS, MAX_VALUE_LENGTH
from streaming.events import RESERVED_PREFIX


def _not_reserved(value: str) -> str:
    if value.startswith(RESERVED_PREFIX):
        raise ValueError(f"ids starting with {RESERVED_PREFIX!r} are reserved")
    return value


# Braces are refused: they would become Redis Cluster hash tags in the key layout. The reserved
# prefix names the service's own pseudo-items (streaming.events.calibration_item).
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^{}]+$"), AfterValidator(_not_reserved)]
SurfaceName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _integral(value: object) -> object:
    # JSON Schema counts 3.0 as an integer; strict mode would not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer in strict models: ints and integral floats, never a bool or a numeric string. (With
# constraints, written `Annotated[int, Field(...), BeforeValidator(_integral)]`: in the other
# order pydantic's schema loses the names `minimum`/`maximum`.)
Int = Annotated[int, BeforeValidator(_integral)]


def _feature_value(value: object) -> float | str:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return float(value)
    if isinstance(value, str) and len(value) <= 256:
        return value
    raise ValueError("must be a finite number or a string of at most 256 characters")


# One validator instead of a union, so an error names the feature and not a union member.
# The schema says what the validator accepts, so that generated clients and fuzzers agree.
FeatureValue = Annotated[
    float | str,
    PlainValidator(_feature_value),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string", "maxLength": 256}]}),
]


def _item_feature_value(value: object) -> float | str:
    # Lengths and counts are bounded by streaming.catalogue.check_features, the one rule for the
    # HTTP edge and the items topic alike.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a finite number or a string")
    return _feature_value(value)


FeatureColumn = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^=]+$")]
ItemFeatureValue = Annotated[
    float | str,
    PlainValidator(_item_feature_value),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "maxLength": MAX_VALUE_LENGTH}]}),
]


def _keys_match(schema: dict[str, Any]) -> None:
    """Pydantic writes a constrained dict key as ``patternProperties``, which leaves keys that
    do not match the pattern unconstrained; the API refuses them, so say so: the pattern goes
    into ``propertyNames`` and the value schema applies to every key."""
    patterns = schema.pop("patternProperties", None)
    if patterns:
        ((pattern, value),) = patterns.items()
        schema.setdefault("propertyNames", {})["pattern"] = pattern
        schema["additionalProperties"] = value


class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # Strict: no bool for a number, no string for a number (JSON Schema types, as documented).
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u-1842",
                    "surface": "home",
                    "k": 10,
                    "user_features": {"country": "de", "age": 34},
                    "exclude": ["item-17"],
                }
            ]
        },
    )

    user_id: Id
    surface: SurfaceName = "default"
    k: Int = Field(10, ge=1, le=100)
    candidates: list[Id] | None = Field(None, min_length=1, max_length=10_000)
    # A user the bundle does not know is embedded by its user tower from these (``column=value``
    # tokens, ``|`` separating multiple values, as in the offline job's users file).
    user_features: dict[Id, FeatureValue] = Field(default_factory=dict, max_length=64, json_schema_extra=_keys_match)
    exclude: list[Id] = Field(default_factory=list, max_length=10_000)


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    explored: bool
    prior: float


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    items: list[RecommendedItem]
    degraded: bool
    degraded_reasons: list[str] = []
    # Candidates that are neither in the serving bundle nor known otherwise: each was scored
    # with the prior of an item known by nothing, at most the request's typical known prior.
    unknown_candidates: int = 0


class FeedbackEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: Id
    request_id: Id
    item_id: Id
    type: Literal["impression", "click", "reward"]
    value: Finite | None = None
    ts: Finite | None = None
    # Where the client really showed the item (from 0), if it re-ordered the slate.
    position: Annotated[int, Field(ge=0, le=1000), BeforeValidator(_integral)] | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # Strict: no bool for a number, no string for a number (JSON Schema types, as documented).
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "3f2b9c-item-42-impression",
                            "request_id": "3f2b9c0d5e6a4b7c8d9e0f1a2b3c4d5e",
                            "item_id": "item-42",
                            "type": "impression",
                            "position": 0,
                        },
                        {
                            "event_id": "3f2b9c-item-42-click",
                            "request_id": "3f2b9c0d5e6a4b7c8d9e0f1a2b3c4d5e",
                            "item_id": "item-42",
                            "type": "click",
                            "position": 0,
                        },
                    ]
                }
            ]
        },
    )

    events: list[FeedbackEventIn] = Field(min_length=1, max_length=1000)


class Rejected(BaseModel):
    index: int
    event_id: str
    reason: str


class FeedbackResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class SurfaceUpdate(BaseModel):
    """Fields left out keep their current values."""

    model_config = ConfigDict(
        extra="forbid",
        # Strict: no bool for a number, no string for a number (JSON Schema types, as documented).
        strict=True,
        json_schema_extra={"examples": [{"policy": "diag_linucb", "alpha": 0.2, "explore_traffic": 0.1}]},
    )

    policy: Literal["diag_linucb", "diag_ts", "epsilon_greedy", "greedy", "random"] | None = None
    alpha: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    sigma: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    epsilon: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    explore_slots: Annotated[int, Field(ge=0, le=100), BeforeValidator(_integral)] | None = None
    explore_traffic: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    count_served_as_impressions: bool | None = None
    pooled: bool | None = None
    lam_pool: Annotated[float, Field(ge=1e-3, le=1e6, allow_inf_nan=False)] | None = None
    lam_cold: Annotated[float, Field(ge=1e-3, le=1e6, allow_inf_nan=False)] | None = None
    calibrate: bool | None = None
    position_aware: bool | None = None
    position_randomization: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    fresh_per_request: Annotated[int, Field(ge=0, le=1000), BeforeValidator(_integral)] | None = None
    fresh_graduate: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    popular_per_request: Annotated[int, Field(ge=0, le=1000), BeforeValidator(_integral)] | None = None
    trending_per_request: Annotated[int, Field(ge=0, le=100), BeforeValidator(_integral)] | None = None
    fold_in_clicks: Annotated[int, Field(ge=0, le=50), BeforeValidator(_integral)] | None = None
    fold_in_weight: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    fresh_slots: Annotated[int, Field(ge=0, le=10), BeforeValidator(_integral)] | None = None
    reward_min: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)] | None = None
    reward_max: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)] | None = None


ArmName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]


class ArmIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: ArmName
    share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        description="The share of the surface's users this arm serves (users, by a stable hash of user_id)."
    )
    settings: SurfaceUpdate = Field(
        default_factory=SurfaceUpdate, description="The arm's settings: the surface's, with these fields changed."
    )


class ExperimentIn(BaseModel):
    """An experiment to start on a surface (``app/experiments.py``). Shares may sum to less than 1:
    the users left over stay outside, served by the surface's own settings."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "alpha0-control",
                    "control": "control",
                    "arms": [
                        {"name": "control", "share": 0.1, "settings": {"alpha": 0.0}},
                        {"name": "explore", "share": 0.9, "settings": {"alpha": 0.2}},
                    ],
                }
            ]
        },
    )

    name: ArmName
    control: ArmName = Field(description="The arm every other arm's lift is measured against.")
    arms: list[ArmIn] = Field(min_length=2, max_length=8)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentIn:
        names = [a.name for a in self.arms]
        for n, name in enumerate(names):
            if name in names[:n]:
                raise ValueError(f"arms.{n}.name: {name!r} names two arms")
        if self.control not in names:
            raise ValueError(f"control: {self.control!r} is not one of the arms ({', '.join(names)})")
        total = math.fsum(a.share for a in self.arms)
        if total > 1 + 1e-9:
            raise ValueError(f"arms: the shares sum to {total:g}, more than 1")
        return self


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"arm": "explore"}]})

    arm: ArmName = Field(description="The arm whose settings the surface takes; the experiment ends.")


class ItemPut(BaseModel):
    """An item to publish or change. Features as in the offline job's items file: a categorical
    column's values joined by ``|``, a number as a number; only the serving bundle's item feature
    columns are taken (an unknown one is refused, the model has never seen it)."""

    model_config = ConfigDict(
        extra="forbid",
        # Strict: no bool for a number, no string for a number (JSON Schema types, as documented).
        strict=True,
        # The demo bundle's one column; a MovieLens bundle takes {"genres": "Comedy|Romance", "year": 2026}.
        json_schema_extra={"examples": [{"features": {"topic": "3"}, "created_at": 1796256000.0}]},
    )

    # The bundle's columns and the count of `|`-separated values are checked beyond the schema
    # (streaming.catalogue.check_features): a 422 names the column.
    features: dict[FeatureColumn, ItemFeatureValue] = Field(
        default_factory=dict, max_length=MAX_COLUMNS, json_schema_extra=_keys_match
    )
    created_at: Annotated[Finite, Field(ge=0)] | None = Field(
        None, description="Epoch seconds, at most a day ahead of now; by default when first published."
    )


class ItemRecordOut(BaseModel):
    features: dict[str, float | str]
    created_at: float
    deleted: bool
    ts: float = Field(description="When the change was accepted (epoch s): the last-writer-wins order.")
    by: str = Field(description="The role whose token made the change: `editor` or `operator`.")


class ItemStateOut(BaseModel):
    item_id: str
    state: Literal["bundle", "live", "deleted", "unknown"] = Field(
        description="`bundle`: the serving bundle has it; `live`: published since; `deleted`: taken down."
    )
    seq: int = Field(description="The catalogue sequence number this replica has caught up to.")
    record: ItemRecordOut | None = None


class FieldError(BaseModel):
    field: str = Field(description="The invalid field, dotted (``events.1.item_id``); ``body`` for the body itself.")
    message: str


class Problem(BaseModel):
    """Every error body (RFC 9457 ``application/problem+json``), as ``app.main.problem`` writes it."""

    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Invalid request"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["k: Input should be greater than or equal to 1"])
    # Only a 422 carries it: one entry per invalid field.
    errors: list[FieldError] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """``GET /readyz``: 200 once a bundle is loaded, else 503 with this same body."""

    ready: bool
    bundle: str | None
    bundle_error: str | None
    degraded: list[str]
