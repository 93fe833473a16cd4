from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.arm_in import ArmIn


T = TypeVar("T", bound="ExperimentIn")


@_attrs_define
class ExperimentIn:
    """An experiment to start on a surface (``app/experiments.py``). Shares may sum to less than 1:
    the users left over stay outside, served by the surface's own settings.

        Attributes:
            arms (list[ArmIn]):
            control (str): The arm every other arm's lift is measured against.
            name (str):
    """

    arms: list[ArmIn]
    control: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        arms = []
        for arms_item_data in self.arms:
            arms_item = arms_item_data.to_dict()
            arms.append(arms_item)

        control = self.control

        name = self.name

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "arms": arms,
                "control": control,
                "name": name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.arm_in import ArmIn

        d = dict(src_dict)
        arms = []
        _arms = d.pop("arms")
        for arms_item_data in _arms:
            arms_item = ArmIn.from_dict(arms_item_data)

            arms.append(arms_item)

        control = d.pop("control")

        name = d.pop("name")

        experiment_in = cls(
            arms=arms,
            control=control,
            name=name,
        )

        return experiment_in
