"""Per-surface exploration settings, shared by every replica through the store."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bandits import make_policy
from bandits.policies import Policy
from streaming.stores import Store, StoreUnavailable

if TYPE_CHECKING:
    from app.experiments import Arm, Experiment

log = structlog.get_logger(__name__)

ServingPolicy = Literal["diag_linucb", "diag_ts", "epsilon_greedy", "greedy", "random"]


class SurfaceConfig(BaseModel):
    """What an operator steers. ``linucb`` (full matrix) is a benchmark reference, not served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: ServingPolicy = "diag_linucb"
    alpha: float = Field(0.1, ge=0, le=100, allow_inf_nan=False)
    sigma: float = Field(0.1, ge=0, le=100, allow_inf_nan=False)
    epsilon: float = Field(0.05, ge=0, le=1, allow_inf_nan=False)
    explore_slots: int = Field(2, ge=0, le=100)
    explore_traffic: float = Field(0.05, ge=0, le=1, allow_inf_nan=False)
    count_served_as_impressions: bool = False
    # The learning model (bandits/README.md): an item-level residual shared by every context
    # with per-cluster residuals held to it by lam_pool; priors calibrated online to this
    # surface's click rate; updates weighted by the examination of the slot served in.
    pooled: bool = True
    # Below 1e-3 the pool's prior precision is meaningless and 1/lam_pool overflows the scores.
    lam_pool: float = Field(4.0, ge=1e-3, le=1e6, allow_inf_nan=False)
    # The item-level ridge of a cold item (the bundle's fresh pool, or published since it), in
    # place of the process's lam: its prior rests on features, so its bonus is wider and its
    # own clicks count sooner (app/recommender.py, _lam0). Same floor as lam_pool. Off (the
    # process's lam, 1) by default: 0.1 measured level in bench-loop and a smaller lift in the
    # demo world's experiment (+4.9%, +10.3% against +12.3%) (bandits/README.md).
    lam_cold: float = Field(1.0, ge=1e-3, le=1e6, allow_inf_nan=False)
    calibrate: bool = True
    position_aware: bool = True
    # Share of requests whose slate is shown in a uniformly random order: what the examination
    # curve is estimated from (bandits.position.examination_curve). It costs clicks there.
    position_randomization: float = Field(0.05, ge=0, le=1, allow_inf_nan=False)
    # Retrieval mode: at most this many items of the bundle's fresh pool join each request.
    fresh_per_request: int = Field(20, ge=0, le=1000)
    # An item of that pool leaves it (graduates) once its item-level evidence, in top-slot
    # impressions' worth, reaches this (app/fresh.py): the draw then reaches items nobody knows.
    fresh_graduate: float = Field(10.0, gt=0, le=1e6, allow_inf_nan=False)
    # Retrieval mode: the bundle's most popular items (recency-weighted) that join each request.
    popular_per_request: int = Field(50, ge=0, le=1000)
    # Retrieval mode: the items trending now (doing far better than their priors, learnt from
    # feedback across every context) that join each request (app/trending.py).
    trending_per_request: int = Field(20, ge=0, le=100)
    # The user's latest clicks folded into her embedding before scoring (at most this many; 0:
    # off). With a factorisation's bundle the embedding is a ridge solve over what she chose,
    # so each click adds (YᵀY + λI)⁻¹ y_item to it (offline/bundle.py, fold_in): her taste and
    # her clusters move within a second of a click, cold users included.
    fold_in_clicks: int = Field(50, ge=0, le=50)
    # What one click weighs in that solve, against one interaction of the training window.
    fold_in_weight: float = Field(1.0, ge=0, le=100, allow_inf_nan=False)
    # Positions at the bottom of every slate given to the best-bonus item published since the
    # bundle (the live catalogue), when a candidate: new items explored on purpose.
    fresh_slots: int = Field(1, ge=0, le=10)
    # Reward values this surface accepts ([reward_min, reward_max]); a click counts as 1 and a
    # served item has one outcome (its first click or reward), so no feedback on one request
    # moves an item more than one outcome at reward_max (streaming/consumer.py).
    reward_min: float = Field(0.0, ge=-1e6, le=1e6, allow_inf_nan=False)
    reward_max: float = Field(1.0, ge=-1e6, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered_bounds(self) -> SurfaceConfig:
        if self.reward_min >= self.reward_max:
            raise ValueError(f"reward_min: must be below reward_max ({self.reward_min} >= {self.reward_max})")
        return self

    def build_policy(self, lam: float) -> Policy[object]:
        params: dict[str, float] = {"lam": lam} if self.policy != "random" else {}
        if self.pooled and self.policy != "random":
            params["lam_pool"] = self.lam_pool
        if self.policy == "diag_linucb":
            params["alpha"] = self.alpha
        elif self.policy == "diag_ts":
            params["sigma"] = self.sigma
        elif self.policy == "epsilon_greedy":
            params["epsilon"] = self.epsilon
        return make_policy(self.policy, **params)


class Surfaces:
    """Reads through a short cache so a request costs no extra round trip; writes go through."""

    def __init__(self, store: Store, cache_s: float, lam: float) -> None:
        self._store = store
        self._cache_s = cache_s
        self._lam = lam
        self._lock = threading.Lock()
        self._cached: dict[str, SurfaceConfig] = {}
        # Experiments share the settings hash and its cache (app/experiments.py).
        self._experiments: dict[str, Experiment] = {}
        self._loaded_at = float("-inf")
        self._policies: dict[SurfaceConfig, Policy[object]] = {}

    def _refresh(self) -> None:
        # Here, not at the top: app.experiments builds on SurfaceConfig.
        from app.experiments import EXPERIMENT_FIELD, Experiment

        now = time.monotonic()
        if now - self._loaded_at <= self._cache_s:
            return
        try:
            raw = self._store.get_surfaces()
        except StoreUnavailable:
            return  # keep serving the last known settings
        fresh, experiments = {}, {}
        for k, v in raw.items():
            if k.startswith(EXPERIMENT_FIELD):
                try:
                    experiments[k[len(EXPERIMENT_FIELD) :]] = Experiment.model_validate_json(v)
                except ValidationError as exc:
                    # One record this version cannot read must not take every request down:
                    # the surface serves without it, and says so in the log.
                    log.error("experiment_unreadable", field=k, error=str(exc)[:500])
            else:
                fresh[k] = SurfaceConfig.model_validate_json(v)
        with self._lock:
            self._cached, self._experiments, self._loaded_at = fresh, experiments, now

    def get(self, name: str) -> SurfaceConfig:
        self._refresh()
        return self._cached.get(name, SurfaceConfig())

    def all(self) -> dict[str, SurfaceConfig]:
        self._refresh()
        return dict(self._cached)

    def experiment(self, surface: str) -> Experiment | None:
        """The surface's latest experiment, running or ended (None if it never had one)."""
        self._refresh()
        return self._experiments.get(surface)

    def arm(self, surface: str, user_id: str) -> tuple[Experiment, Arm] | None:
        """The running experiment's arm that serves this user on this surface, if any."""
        experiment = self.experiment(surface)
        if experiment is None or not experiment.running:
            return None
        arm = experiment.assign(user_id)
        return None if arm is None else (experiment, arm)

    def running_experiments(self) -> list[Experiment]:
        self._refresh()
        return [e for e in self._experiments.values() if e.running]

    def arm_namespaces(self, version: str) -> list[str]:
        """The statistics namespace of every arm of every running experiment under ``version``."""
        from app.experiments import namespace

        return [namespace(version, e, arm) for e in self.running_experiments() for arm in e.arms]

    def put_experiment(self, experiment: Experiment, who: str, action: str) -> None:
        """Store an experiment (started, ended or promoted) with its audit record."""
        from app.experiments import EXPERIMENT_FIELD

        change = {"surface": experiment.surface, "who": who, "at": time.time(), "experiment": action,
                  "new": experiment.model_dump(mode="json")}  # fmt: skip
        self._store.put_surface(
            EXPERIMENT_FIELD + experiment.surface, experiment.model_dump_json().encode(), orjson.dumps(change)
        )
        with self._lock:
            self._experiments = {**self._experiments, experiment.surface: experiment}

    def put(self, name: str, config: SurfaceConfig, who: str) -> SurfaceConfig:
        old = self.get(name)
        change = {
            "surface": name,
            "who": who,
            "at": time.time(),
            "old": old.model_dump(),
            "new": config.model_dump(),
        }
        self._store.put_surface(name, config.model_dump_json().encode(), orjson.dumps(change))
        with self._lock:
            self._cached = {**self._cached, name: config}
        return old

    def changes(self, limit: int = 50) -> list[dict[str, object]]:
        return [orjson.loads(raw) for raw in self._store.surface_changes(limit)]

    def policy(self, config: SurfaceConfig) -> Policy[object]:
        policy = self._policies.get(config)
        if policy is None:
            policy = config.build_policy(self._lam)
            self._policies[config] = policy
        return policy
