from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.recommend_request_user_features import RecommendRequestUserFeatures


T = TypeVar("T", bound="RecommendRequest")


@_attrs_define
class RecommendRequest:
    """
    Attributes:
        user_id (str):
        candidates (list[str] | None | Unset):
        exclude (list[str] | Unset):
        k (int | Unset):  Default: 10.
        surface (str | Unset):  Default: 'default'.
        user_features (RecommendRequestUserFeatures | Unset):
    """

    user_id: str
    candidates: list[str] | None | Unset = UNSET
    exclude: list[str] | Unset = UNSET
    k: int | Unset = 10
    surface: str | Unset = "default"
    user_features: RecommendRequestUserFeatures | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        user_id = self.user_id

        candidates: list[str] | None | Unset
        if isinstance(self.candidates, Unset):
            candidates = UNSET
        elif isinstance(self.candidates, list):
            candidates = self.candidates

        else:
            candidates = self.candidates

        exclude: list[str] | Unset = UNSET
        if not isinstance(self.exclude, Unset):
            exclude = self.exclude

        k = self.k

        surface = self.surface

        user_features: dict[str, Any] | Unset = UNSET
        if not isinstance(self.user_features, Unset):
            user_features = self.user_features.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "user_id": user_id,
            }
        )
        if candidates is not UNSET:
            field_dict["candidates"] = candidates
        if exclude is not UNSET:
            field_dict["exclude"] = exclude
        if k is not UNSET:
            field_dict["k"] = k
        if surface is not UNSET:
            field_dict["surface"] = surface
        if user_features is not UNSET:
            field_dict["user_features"] = user_features

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.recommend_request_user_features import RecommendRequestUserFeatures

        d = dict(src_dict)
        user_id = d.pop("user_id")

        def _parse_candidates(data: object) -> list[str] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                candidates_type_0 = cast(list[str], data)

                return candidates_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None | Unset, data)

        candidates = _parse_candidates(d.pop("candidates", UNSET))

        exclude = cast(list[str], d.pop("exclude", UNSET))

        k = d.pop("k", UNSET)

        surface = d.pop("surface", UNSET)

        _user_features = d.pop("user_features", UNSET)
        user_features: RecommendRequestUserFeatures | Unset
        if isinstance(_user_features, Unset):
            user_features = UNSET
        else:
            user_features = RecommendRequestUserFeatures.from_dict(_user_features)

        recommend_request = cls(
            user_id=user_id,
            candidates=candidates,
            exclude=exclude,
            k=k,
            surface=surface,
            user_features=user_features,
        )

        return recommend_request
