from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="Readiness")


@_attrs_define
class Readiness:
    """``GET /readyz``: 200 once a bundle is loaded, else 503 with this same body.

    Attributes:
        bundle (None | str):
        bundle_error (None | str):
        degraded (list[str]):
        ready (bool):
    """

    bundle: None | str
    bundle_error: None | str
    degraded: list[str]
    ready: bool
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        bundle: None | str
        bundle = self.bundle

        bundle_error: None | str
        bundle_error = self.bundle_error

        degraded = self.degraded

        ready = self.ready

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "bundle": bundle,
                "bundle_error": bundle_error,
                "degraded": degraded,
                "ready": ready,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)

        def _parse_bundle(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        bundle = _parse_bundle(d.pop("bundle"))

        def _parse_bundle_error(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        bundle_error = _parse_bundle_error(d.pop("bundle_error"))

        degraded = cast(list[str], d.pop("degraded"))

        ready = d.pop("ready")

        readiness = cls(
            bundle=bundle,
            bundle_error=bundle_error,
            degraded=degraded,
            ready=ready,
        )

        readiness.additional_properties = d
        return readiness

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
