from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define

from ..models.surface_config_policy import SurfaceConfigPolicy
from ..types import UNSET, Unset

T = TypeVar("T", bound="SurfaceConfig")


@_attrs_define
class SurfaceConfig:
    """What an operator steers. ``linucb`` (full matrix) is a benchmark reference, not served.

    Attributes:
        alpha (float | Unset):  Default: 0.1.
        calibrate (bool | Unset):  Default: True.
        count_served_as_impressions (bool | Unset):  Default: False.
        epsilon (float | Unset):  Default: 0.05.
        explore_slots (int | Unset):  Default: 2.
        explore_traffic (float | Unset):  Default: 0.05.
        fold_in_clicks (int | Unset):  Default: 50.
        fold_in_weight (float | Unset):  Default: 1.0.
        fresh_graduate (float | Unset):  Default: 10.0.
        fresh_per_request (int | Unset):  Default: 20.
        fresh_slots (int | Unset):  Default: 1.
        lam_cold (float | Unset):  Default: 1.0.
        lam_pool (float | Unset):  Default: 4.0.
        policy (SurfaceConfigPolicy | Unset):  Default: SurfaceConfigPolicy.DIAG_LINUCB.
        pooled (bool | Unset):  Default: True.
        popular_per_request (int | Unset):  Default: 50.
        position_aware (bool | Unset):  Default: True.
        position_randomization (float | Unset):  Default: 0.05.
        reward_max (float | Unset):  Default: 1.0.
        reward_min (float | Unset):  Default: 0.0.
        sigma (float | Unset):  Default: 0.1.
        trending_per_request (int | Unset):  Default: 20.
    """

    alpha: float | Unset = 0.1
    calibrate: bool | Unset = True
    count_served_as_impressions: bool | Unset = False
    epsilon: float | Unset = 0.05
    explore_slots: int | Unset = 2
    explore_traffic: float | Unset = 0.05
    fold_in_clicks: int | Unset = 50
    fold_in_weight: float | Unset = 1.0
    fresh_graduate: float | Unset = 10.0
    fresh_per_request: int | Unset = 20
    fresh_slots: int | Unset = 1
    lam_cold: float | Unset = 1.0
    lam_pool: float | Unset = 4.0
    policy: SurfaceConfigPolicy | Unset = SurfaceConfigPolicy.DIAG_LINUCB
    pooled: bool | Unset = True
    popular_per_request: int | Unset = 50
    position_aware: bool | Unset = True
    position_randomization: float | Unset = 0.05
    reward_max: float | Unset = 1.0
    reward_min: float | Unset = 0.0
    sigma: float | Unset = 0.1
    trending_per_request: int | Unset = 20

    def to_dict(self) -> dict[str, Any]:
        alpha = self.alpha

        calibrate = self.calibrate

        count_served_as_impressions = self.count_served_as_impressions

        epsilon = self.epsilon

        explore_slots = self.explore_slots

        explore_traffic = self.explore_traffic

        fold_in_clicks = self.fold_in_clicks

        fold_in_weight = self.fold_in_weight

        fresh_graduate = self.fresh_graduate

        fresh_per_request = self.fresh_per_request

        fresh_slots = self.fresh_slots

        lam_cold = self.lam_cold

        lam_pool = self.lam_pool

        policy: str | Unset = UNSET
        if not isinstance(self.policy, Unset):
            policy = self.policy.value

        pooled = self.pooled

        popular_per_request = self.popular_per_request

        position_aware = self.position_aware

        position_randomization = self.position_randomization

        reward_max = self.reward_max

        reward_min = self.reward_min

        sigma = self.sigma

        trending_per_request = self.trending_per_request

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if alpha is not UNSET:
            field_dict["alpha"] = alpha
        if calibrate is not UNSET:
            field_dict["calibrate"] = calibrate
        if count_served_as_impressions is not UNSET:
            field_dict["count_served_as_impressions"] = count_served_as_impressions
        if epsilon is not UNSET:
            field_dict["epsilon"] = epsilon
        if explore_slots is not UNSET:
            field_dict["explore_slots"] = explore_slots
        if explore_traffic is not UNSET:
            field_dict["explore_traffic"] = explore_traffic
        if fold_in_clicks is not UNSET:
            field_dict["fold_in_clicks"] = fold_in_clicks
        if fold_in_weight is not UNSET:
            field_dict["fold_in_weight"] = fold_in_weight
        if fresh_graduate is not UNSET:
            field_dict["fresh_graduate"] = fresh_graduate
        if fresh_per_request is not UNSET:
            field_dict["fresh_per_request"] = fresh_per_request
        if fresh_slots is not UNSET:
            field_dict["fresh_slots"] = fresh_slots
        if lam_cold is not UNSET:
            field_dict["lam_cold"] = lam_cold
        if lam_pool is not UNSET:
            field_dict["lam_pool"] = lam_pool
        if policy is not UNSET:
            field_dict["policy"] = policy
        if pooled is not UNSET:
            field_dict["pooled"] = pooled
        if popular_per_request is not UNSET:
            field_dict["popular_per_request"] = popular_per_request
        if position_aware is not UNSET:
            field_dict["position_aware"] = position_aware
        if position_randomization is not UNSET:
            field_dict["position_randomization"] = position_randomization
        if reward_max is not UNSET:
            field_dict["reward_max"] = reward_max
        if reward_min is not UNSET:
            field_dict["reward_min"] = reward_min
        if sigma is not UNSET:
            field_dict["sigma"] = sigma
        if trending_per_request is not UNSET:
            field_dict["trending_per_request"] = trending_per_request

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        alpha = d.pop("alpha", UNSET)

        calibrate = d.pop("calibrate", UNSET)

        count_served_as_impressions = d.pop("count_served_as_impressions", UNSET)

        epsilon = d.pop("epsilon", UNSET)

        explore_slots = d.pop("explore_slots", UNSET)

        explore_traffic = d.pop("explore_traffic", UNSET)

        fold_in_clicks = d.pop("fold_in_clicks", UNSET)

        fold_in_weight = d.pop("fold_in_weight", UNSET)

        fresh_graduate = d.pop("fresh_graduate", UNSET)

        fresh_per_request = d.pop("fresh_per_request", UNSET)

        fresh_slots = d.pop("fresh_slots", UNSET)

        lam_cold = d.pop("lam_cold", UNSET)

        lam_pool = d.pop("lam_pool", UNSET)

        _policy = d.pop("policy", UNSET)
        policy: SurfaceConfigPolicy | Unset
        if isinstance(_policy, Unset):
            policy = UNSET
        else:
            policy = SurfaceConfigPolicy(_policy)

        pooled = d.pop("pooled", UNSET)

        popular_per_request = d.pop("popular_per_request", UNSET)

        position_aware = d.pop("position_aware", UNSET)

        position_randomization = d.pop("position_randomization", UNSET)

        reward_max = d.pop("reward_max", UNSET)

        reward_min = d.pop("reward_min", UNSET)

        sigma = d.pop("sigma", UNSET)

        trending_per_request = d.pop("trending_per_request", UNSET)

        surface_config = cls(
            alpha=alpha,
            calibrate=calibrate,
            count_served_as_impressions=count_served_as_impressions,
            epsilon=epsilon,
            explore_slots=explore_slots,
            explore_traffic=explore_traffic,
            fold_in_clicks=fold_in_clicks,
            fold_in_weight=fold_in_weight,
            fresh_graduate=fresh_graduate,
            fresh_per_request=fresh_per_request,
            fresh_slots=fresh_slots,
            lam_cold=lam_cold,
            lam_pool=lam_pool,
            policy=policy,
            pooled=pooled,
            popular_per_request=popular_per_request,
            position_aware=position_aware,
            position_randomization=position_randomization,
            reward_max=reward_max,
            reward_min=reward_min,
            sigma=sigma,
            trending_per_request=trending_per_request,
        )

        return surface_config
