from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.item_put_features import ItemPutFeatures


T = TypeVar("T", bound="ItemPut")


@_attrs_define
class ItemPut:
    """An item to publish or change. Features as in the offline job's items file: a categorical
    column's values joined by ``|``, a number as a number; only the serving bundle's item feature
    columns are taken (an unknown one is refused, the model has never seen it).

        Attributes:
            created_at (float | None | Unset): Epoch seconds, at most a day ahead of now; by default when first published.
            features (ItemPutFeatures | Unset):
    """

    created_at: float | None | Unset = UNSET
    features: ItemPutFeatures | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        created_at: float | None | Unset
        if isinstance(self.created_at, Unset):
            created_at = UNSET
        else:
            created_at = self.created_at

        features: dict[str, Any] | Unset = UNSET
        if not isinstance(self.features, Unset):
            features = self.features.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if created_at is not UNSET:
            field_dict["created_at"] = created_at
        if features is not UNSET:
            field_dict["features"] = features

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.item_put_features import ItemPutFeatures

        d = dict(src_dict)

        def _parse_created_at(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        created_at = _parse_created_at(d.pop("created_at", UNSET))

        _features = d.pop("features", UNSET)
        features: ItemPutFeatures | Unset
        if isinstance(_features, Unset):
            features = UNSET
        else:
            features = ItemPutFeatures.from_dict(_features)

        item_put = cls(
            created_at=created_at,
            features=features,
        )

        return item_put
