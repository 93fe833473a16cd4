from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.feedback_event_in_type import FeedbackEventInType
from ..types import UNSET, Unset

T = TypeVar("T", bound="FeedbackEventIn")


@_attrs_define
class FeedbackEventIn:
    """
    Attributes:
        event_id (str):
        item_id (str):
        request_id (str):
        type_ (FeedbackEventInType):
        position (int | None | Unset):
        ts (float | None | Unset):
        value (float | None | Unset):
    """

    event_id: str
    item_id: str
    request_id: str
    type_: FeedbackEventInType
    position: int | None | Unset = UNSET
    ts: float | None | Unset = UNSET
    value: float | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        event_id = self.event_id

        item_id = self.item_id

        request_id = self.request_id

        type_ = self.type_.value

        position: int | None | Unset
        if isinstance(self.position, Unset):
            position = UNSET
        else:
            position = self.position

        ts: float | None | Unset
        if isinstance(self.ts, Unset):
            ts = UNSET
        else:
            ts = self.ts

        value: float | None | Unset
        if isinstance(self.value, Unset):
            value = UNSET
        else:
            value = self.value

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "event_id": event_id,
                "item_id": item_id,
                "request_id": request_id,
                "type": type_,
            }
        )
        if position is not UNSET:
            field_dict["position"] = position
        if ts is not UNSET:
            field_dict["ts"] = ts
        if value is not UNSET:
            field_dict["value"] = value

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        event_id = d.pop("event_id")

        item_id = d.pop("item_id")

        request_id = d.pop("request_id")

        type_ = FeedbackEventInType(d.pop("type"))

        def _parse_position(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        position = _parse_position(d.pop("position", UNSET))

        def _parse_ts(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        ts = _parse_ts(d.pop("ts", UNSET))

        def _parse_value(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        value = _parse_value(d.pop("value", UNSET))

        feedback_event_in = cls(
            event_id=event_id,
            item_id=item_id,
            request_id=request_id,
            type_=type_,
            position=position,
            ts=ts,
            value=value,
        )

        return feedback_event_in
