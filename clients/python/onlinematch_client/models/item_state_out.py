from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.item_state_out_state import ItemStateOutState
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.item_record_out import ItemRecordOut


T = TypeVar("T", bound="ItemStateOut")


@_attrs_define
class ItemStateOut:
    """
    Attributes:
        item_id (str):
        seq (int): The catalogue sequence number this replica has caught up to.
        state (ItemStateOutState): `bundle`: the serving bundle has it; `live`: published since; `deleted`: taken down.
        record (ItemRecordOut | None | Unset):
    """

    item_id: str
    seq: int
    state: ItemStateOutState
    record: ItemRecordOut | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.item_record_out import ItemRecordOut

        item_id = self.item_id

        seq = self.seq

        state = self.state.value

        record: dict[str, Any] | None | Unset
        if isinstance(self.record, Unset):
            record = UNSET
        elif isinstance(self.record, ItemRecordOut):
            record = self.record.to_dict()
        else:
            record = self.record

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "item_id": item_id,
                "seq": seq,
                "state": state,
            }
        )
        if record is not UNSET:
            field_dict["record"] = record

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.item_record_out import ItemRecordOut

        d = dict(src_dict)
        item_id = d.pop("item_id")

        seq = d.pop("seq")

        state = ItemStateOutState(d.pop("state"))

        def _parse_record(data: object) -> ItemRecordOut | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                record_type_0 = ItemRecordOut.from_dict(data)

                return record_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ItemRecordOut | None | Unset, data)

        record = _parse_record(d.pop("record", UNSET))

        item_state_out = cls(
            item_id=item_id,
            seq=seq,
            state=state,
            record=record,
        )

        item_state_out.additional_properties = d
        return item_state_out

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
