from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar, cast

from attrs import define as _attrs_define

from ..models.surface_update_policy_type_0 import SurfaceUpdatePolicyType0
from ..types import UNSET, Unset

T = TypeVar("T", bound="SurfaceUpdate")


@_attrs_define
class SurfaceUpdate:
    """Fields left out keep their current values.

    Attributes:
        alpha (float | None | Unset):
        calibrate (bool | None | Unset):
        count_served_as_impressions (bool | None | Unset):
        epsilon (float | None | Unset):
        explore_slots (int | None | Unset):
        explore_traffic (float | None | Unset):
        fold_in_clicks (int | None | Unset):
        fold_in_weight (float | None | Unset):
        fresh_graduate (float | None | Unset):
        fresh_per_request (int | None | Unset):
        fresh_slots (int | None | Unset):
        lam_cold (float | None | Unset):
        lam_pool (float | None | Unset):
        policy (None | SurfaceUpdatePolicyType0 | Unset):
        pooled (bool | None | Unset):
        popular_per_request (int | None | Unset):
        position_aware (bool | None | Unset):
        position_randomization (float | None | Unset):
        reward_max (float | None | Unset):
        reward_min (float | None | Unset):
        sigma (float | None | Unset):
        trending_per_request (int | None | Unset):
    """

    alpha: float | None | Unset = UNSET
    calibrate: bool | None | Unset = UNSET
    count_served_as_impressions: bool | None | Unset = UNSET
    epsilon: float | None | Unset = UNSET
    explore_slots: int | None | Unset = UNSET
    explore_traffic: float | None | Unset = UNSET
    fold_in_clicks: int | None | Unset = UNSET
    fold_in_weight: float | None | Unset = UNSET
    fresh_graduate: float | None | Unset = UNSET
    fresh_per_request: int | None | Unset = UNSET
    fresh_slots: int | None | Unset = UNSET
    lam_cold: float | None | Unset = UNSET
    lam_pool: float | None | Unset = UNSET
    policy: None | SurfaceUpdatePolicyType0 | Unset = UNSET
    pooled: bool | None | Unset = UNSET
    popular_per_request: int | None | Unset = UNSET
    position_aware: bool | None | Unset = UNSET
    position_randomization: float | None | Unset = UNSET
    reward_max: float | None | Unset = UNSET
    reward_min: float | None | Unset = UNSET
    sigma: float | None | Unset = UNSET
    trending_per_request: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        alpha: float | None | Unset
        if isinstance(self.alpha, Unset):
            alpha = UNSET
        else:
            alpha = self.alpha

        calibrate: bool | None | Unset
        if isinstance(self.calibrate, Unset):
            calibrate = UNSET
        else:
            calibrate = self.calibrate

        count_served_as_impressions: bool | None | Unset
        if isinstance(self.count_served_as_impressions, Unset):
            count_served_as_impressions = UNSET
        else:
            count_served_as_impressions = self.count_served_as_impressions

        epsilon: float | None | Unset
        if isinstance(self.epsilon, Unset):
            epsilon = UNSET
        else:
            epsilon = self.epsilon

        explore_slots: int | None | Unset
        if isinstance(self.explore_slots, Unset):
            explore_slots = UNSET
        else:
            explore_slots = self.explore_slots

        explore_traffic: float | None | Unset
        if isinstance(self.explore_traffic, Unset):
            explore_traffic = UNSET
        else:
            explore_traffic = self.explore_traffic

        fold_in_clicks: int | None | Unset
        if isinstance(self.fold_in_clicks, Unset):
            fold_in_clicks = UNSET
        else:
            fold_in_clicks = self.fold_in_clicks

        fold_in_weight: float | None | Unset
        if isinstance(self.fold_in_weight, Unset):
            fold_in_weight = UNSET
        else:
            fold_in_weight = self.fold_in_weight

        fresh_graduate: float | None | Unset
        if isinstance(self.fresh_graduate, Unset):
            fresh_graduate = UNSET
        else:
            fresh_graduate = self.fresh_graduate

        fresh_per_request: int | None | Unset
        if isinstance(self.fresh_per_request, Unset):
            fresh_per_request = UNSET
        else:
            fresh_per_request = self.fresh_per_request

        fresh_slots: int | None | Unset
        if isinstance(self.fresh_slots, Unset):
            fresh_slots = UNSET
        else:
            fresh_slots = self.fresh_slots

        lam_cold: float | None | Unset
        if isinstance(self.lam_cold, Unset):
            lam_cold = UNSET
        else:
            lam_cold = self.lam_cold

        lam_pool: float | None | Unset
        if isinstance(self.lam_pool, Unset):
            lam_pool = UNSET
        else:
            lam_pool = self.lam_pool

        policy: None | str | Unset
        if isinstance(self.policy, Unset):
            policy = UNSET
        elif isinstance(self.policy, SurfaceUpdatePolicyType0):
            policy = self.policy.value
        else:
            policy = self.policy

        pooled: bool | None | Unset
        if isinstance(self.pooled, Unset):
            pooled = UNSET
        else:
            pooled = self.pooled

        popular_per_request: int | None | Unset
        if isinstance(self.popular_per_request, Unset):
            popular_per_request = UNSET
        else:
            popular_per_request = self.popular_per_request

        position_aware: bool | None | Unset
        if isinstance(self.position_aware, Unset):
            position_aware = UNSET
        else:
            position_aware = self.position_aware

        position_randomization: float | None | Unset
        if isinstance(self.position_randomization, Unset):
            position_randomization = UNSET
        else:
            position_randomization = self.position_randomization

        reward_max: float | None | Unset
        if isinstance(self.reward_max, Unset):
            reward_max = UNSET
        else:
            reward_max = self.reward_max

        reward_min: float | None | Unset
        if isinstance(self.reward_min, Unset):
            reward_min = UNSET
        else:
            reward_min = self.reward_min

        sigma: float | None | Unset
        if isinstance(self.sigma, Unset):
            sigma = UNSET
        else:
            sigma = self.sigma

        trending_per_request: int | None | Unset
        if isinstance(self.trending_per_request, Unset):
            trending_per_request = UNSET
        else:
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

        def _parse_alpha(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        alpha = _parse_alpha(d.pop("alpha", UNSET))

        def _parse_calibrate(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        calibrate = _parse_calibrate(d.pop("calibrate", UNSET))

        def _parse_count_served_as_impressions(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        count_served_as_impressions = _parse_count_served_as_impressions(d.pop("count_served_as_impressions", UNSET))

        def _parse_epsilon(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        epsilon = _parse_epsilon(d.pop("epsilon", UNSET))

        def _parse_explore_slots(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        explore_slots = _parse_explore_slots(d.pop("explore_slots", UNSET))

        def _parse_explore_traffic(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        explore_traffic = _parse_explore_traffic(d.pop("explore_traffic", UNSET))

        def _parse_fold_in_clicks(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        fold_in_clicks = _parse_fold_in_clicks(d.pop("fold_in_clicks", UNSET))

        def _parse_fold_in_weight(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        fold_in_weight = _parse_fold_in_weight(d.pop("fold_in_weight", UNSET))

        def _parse_fresh_graduate(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        fresh_graduate = _parse_fresh_graduate(d.pop("fresh_graduate", UNSET))

        def _parse_fresh_per_request(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        fresh_per_request = _parse_fresh_per_request(d.pop("fresh_per_request", UNSET))

        def _parse_fresh_slots(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        fresh_slots = _parse_fresh_slots(d.pop("fresh_slots", UNSET))

        def _parse_lam_cold(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        lam_cold = _parse_lam_cold(d.pop("lam_cold", UNSET))

        def _parse_lam_pool(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        lam_pool = _parse_lam_pool(d.pop("lam_pool", UNSET))

        def _parse_policy(data: object) -> None | SurfaceUpdatePolicyType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                policy_type_0 = SurfaceUpdatePolicyType0(data)

                return policy_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | SurfaceUpdatePolicyType0 | Unset, data)

        policy = _parse_policy(d.pop("policy", UNSET))

        def _parse_pooled(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        pooled = _parse_pooled(d.pop("pooled", UNSET))

        def _parse_popular_per_request(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        popular_per_request = _parse_popular_per_request(d.pop("popular_per_request", UNSET))

        def _parse_position_aware(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        position_aware = _parse_position_aware(d.pop("position_aware", UNSET))

        def _parse_position_randomization(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        position_randomization = _parse_position_randomization(d.pop("position_randomization", UNSET))

        def _parse_reward_max(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        reward_max = _parse_reward_max(d.pop("reward_max", UNSET))

        def _parse_reward_min(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        reward_min = _parse_reward_min(d.pop("reward_min", UNSET))

        def _parse_sigma(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        sigma = _parse_sigma(d.pop("sigma", UNSET))

        def _parse_trending_per_request(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        trending_per_request = _parse_trending_per_request(d.pop("trending_per_request", UNSET))

        surface_update = cls(
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

        return surface_update
