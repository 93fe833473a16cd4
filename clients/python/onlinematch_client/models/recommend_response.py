from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.recommended_item import RecommendedItem


T = TypeVar("T", bound="RecommendResponse")


@_attrs_define
class RecommendResponse:
    """
    Attributes:
        degraded (bool):
        items (list[RecommendedItem]):
        model_version (str):
        request_id (str):
        degraded_reasons (list[str] | Unset):
        unknown_candidates (int | Unset):  Default: 0.
    """

    degraded: bool
    items: list[RecommendedItem]
    model_version: str
    request_id: str
    degraded_reasons: list[str] | Unset = UNSET
    unknown_candidates: int | Unset = 0
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        degraded = self.degraded

        items = []
        for items_item_data in self.items:
            items_item = items_item_data.to_dict()
            items.append(items_item)

        model_version = self.model_version

        request_id = self.request_id

        degraded_reasons: list[str] | Unset = UNSET
        if not isinstance(self.degraded_reasons, Unset):
            degraded_reasons = self.degraded_reasons

        unknown_candidates = self.unknown_candidates

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "degraded": degraded,
                "items": items,
                "model_version": model_version,
                "request_id": request_id,
            }
        )
        if degraded_reasons is not UNSET:
            field_dict["degraded_reasons"] = degraded_reasons
        if unknown_candidates is not UNSET:
            field_dict["unknown_candidates"] = unknown_candidates

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.recommended_item import RecommendedItem

        d = dict(src_dict)
        degraded = d.pop("degraded")

        items = []
        _items = d.pop("items")
        for items_item_data in _items:
            items_item = RecommendedItem.from_dict(items_item_data)

            items.append(items_item)

        model_version = d.pop("model_version")

        request_id = d.pop("request_id")

        degraded_reasons = cast(list[str], d.pop("degraded_reasons", UNSET))

        unknown_candidates = d.pop("unknown_candidates", UNSET)

        recommend_response = cls(
            degraded=degraded,
            items=items,
            model_version=model_version,
            request_id=request_id,
            degraded_reasons=degraded_reasons,
            unknown_candidates=unknown_candidates,
        )

        recommend_response.additional_properties = d
        return recommend_response

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
