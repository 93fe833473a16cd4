from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.surface_update import SurfaceUpdate


T = TypeVar("T", bound="ArmIn")


@_attrs_define
class ArmIn:
    """
    Attributes:
        name (str):
        share (float): The share of the surface's users this arm serves (users, by a stable hash of user_id).
        settings (SurfaceUpdate | Unset): Fields left out keep their current values.
    """

    name: str
    share: float
    settings: SurfaceUpdate | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        share = self.share

        settings: dict[str, Any] | Unset = UNSET
        if not isinstance(self.settings, Unset):
            settings = self.settings.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "name": name,
                "share": share,
            }
        )
        if settings is not UNSET:
            field_dict["settings"] = settings

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.surface_update import SurfaceUpdate

        d = dict(src_dict)
        name = d.pop("name")

        share = d.pop("share")

        _settings = d.pop("settings", UNSET)
        settings: SurfaceUpdate | Unset
        if isinstance(_settings, Unset):
            settings = UNSET
        else:
            settings = SurfaceUpdate.from_dict(_settings)

        arm_in = cls(
            name=name,
            share=share,
            settings=settings,
        )

        return arm_in
