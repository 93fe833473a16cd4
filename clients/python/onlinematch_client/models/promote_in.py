from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="PromoteIn")


@_attrs_define
class PromoteIn:
    """
    Attributes:
        arm (str): The arm whose settings the surface takes; the experiment ends.
    """

    arm: str

    def to_dict(self) -> dict[str, Any]:
        arm = self.arm

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "arm": arm,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        arm = d.pop("arm")

        promote_in = cls(
            arm=arm,
        )

        return promote_in
