from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.item_record_out_features import ItemRecordOutFeatures


T = TypeVar("T", bound="ItemRecordOut")


@_attrs_define
class ItemRecordOut:
    """
    Attributes:
        by (str): The role whose token made the change: `editor` or `operator`.
        created_at (float):
        deleted (bool):
        features (ItemRecordOutFeatures):
        ts (float): When the change was accepted (epoch s): the last-writer-wins order.
    """

    by: str
    created_at: float
    deleted: bool
    features: ItemRecordOutFeatures
    ts: float
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        by = self.by

        created_at = self.created_at

        deleted = self.deleted

        features = self.features.to_dict()

        ts = self.ts

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "by": by,
                "created_at": created_at,
                "deleted": deleted,
                "features": features,
                "ts": ts,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.item_record_out_features import ItemRecordOutFeatures

        d = dict(src_dict)
        by = d.pop("by")

        created_at = d.pop("created_at")

        deleted = d.pop("deleted")

        features = ItemRecordOutFeatures.from_dict(d.pop("features"))

        ts = d.pop("ts")

        item_record_out = cls(
            by=by,
            created_at=created_at,
            deleted=deleted,
            features=features,
            ts=ts,
        )

        item_record_out.additional_properties = d
        return item_record_out

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
