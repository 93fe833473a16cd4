"""Experiments per surface: arms with their own settings, users split by a stable hash, each arm
learning in its own statistics namespace, so a control arm shows what its policy would have
done had it served alone (for α = 0: what never exploring would have done).

How an experiment runs
----------------------
- **Stored with the surface's settings**: the field ``experiment:<surface>`` of the settings
  hash (``om:surfaces``; a surface name cannot hold ``:``), read through the same one-second
  cache as the settings, so a request pays no extra round trip and every replica switches
  within ``SURFACE_CACHE_S``. Each change (start, end, promote) is a change record in the
  audit log beside the settings' own (``om:surface-changes``). An ended experiment stays
  stored, marked ended, until the next one starts: the dashboard keeps its final figures.
- **Assignment**: ``u = blake2b(id, user_id) / 2⁶⁴`` in [0, 1), and the arms take consecutive
  ranges of ``u`` by their shares, in the order given. A user keeps her arm for the whole
  experiment on every replica, and a new experiment (a new ``id``) draws afresh. Shares may
  sum to less than 1: users past the last range stay outside, served by the surface's own
  settings in the bundle's namespace.
- **An arm's settings** are the surface's at the start with the arm's overrides applied, fixed
  then: editing the surface later does not move an arm mid-experiment.
- **Namespaces**: an arm's statistics (and its calibration, examination curve and trending,
  which live in the same namespace) are kept under the version ``<bundle version>@<id>/<arm>``
  (``namespace``). Each starts empty, from the prior, at the experiment's start; the
  calibration and the examination curve fall back to the surface's last trusted ones until the
  arm has its own (``app/calibrations.py``), the same for every arm. Replicas report every arm
  of every running experiment, used or idle, exactly as they report their bundle version
  (``app/lease.py``, ``Surfaces.arm_namespaces``); once an experiment ends nobody reports
  them, and the consumers' retirement pass deletes them after the grace period like an old
  bundle version's (``streaming.stores.retirable``). A new bundle starts every arm afresh, as
  it does the surface.
- **Promote**: the surface takes the arm's settings, and the experiment ends. The surface
  keeps learning in the bundle's namespace, which went on learning from the traffic outside
  the experiment (none, at shares summing to 1): the promoted arm's own statistics are
  retired with the others.
- **Figures** (``arm_results``): the consumer counts each arm's shown requests, clicks and
  Σ clicks² under the counter surface ``<surface>@<id>/<arm>``
  (``streaming.events.arm_stats_key``), per minute and as a running total kept 30 days past
  its last write (``streaming/opstats.py``); ``bandits/abtest.py`` turns them into clicks per
  request with intervals and the lift over control.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.surfaces import SurfaceConfig
from bandits.abtest import ArmSums, Lift, clicks_per_request, lift
from streaming.events import arm_namespace
from streaming.opstats import coin_totals

EXPERIMENT_FIELD = "experiment:"  # prefix of an experiment's field in the settings hash


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    share: float
    # The overrides the editor gave, and the settings they made (fixed at the start).
    settings: dict[str, Any]
    config: SurfaceConfig


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    surface: str
    control: str
    arms: tuple[Arm, ...]
    started_at: float
    started_by: str
    ended_at: float | None = None
    ended_by: str | None = None
    # "ended", or "promoted <arm>"
    outcome: str | None = None

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def key(self, arm: Arm) -> str:
        """The arm's key: what goes into the request context and the exported rows."""
        return f"{self.id}/{arm.name}"

    def arm(self, name: str) -> Arm | None:
        return next((a for a in self.arms if a.name == name), None)

    def assign(self, user_id: str) -> Arm | None:
        """The user's arm, or None when she falls outside every arm's share.

        >>> e = start("home", "x", "a", [("a", 0.5, {}), ("b", 0.5, {"alpha": 0.0})], SurfaceConfig(), "ops")
        >>> arms = [e.assign(f"user-{n}") for n in range(1000)]
        >>> [e.assign(f"user-{n}") for n in range(1000)] == arms  # stable
        True
        >>> 400 < sum(a is not None and a.name == "a" for a in arms) < 600
        True
        """
        u = int.from_bytes(hashlib.blake2b(f"{self.id}\x00{user_id}".encode(), digest_size=8).digest(), "big")
        point = u / 2.0**64
        edge = 0.0
        for arm in self.arms:
            edge += arm.share
            if point < edge:
                return arm
        return None

    def ended(self, who: str, outcome: str, now: float | None = None) -> Experiment:
        return self.model_copy(
            update={"ended_at": time.time() if now is None else now, "ended_by": who, "outcome": outcome}
        )


def start(
    surface: str,
    name: str,
    control: str,
    arms: Sequence[tuple[str, float, dict[str, Any]]],
    base: SurfaceConfig,
    who: str,
    now: float | None = None,
) -> Experiment:
    """A new experiment: each arm's settings are ``base`` with its overrides (validated here, so
    a bad combination raises pydantic's ``ValidationError``), under a fresh id."""
    built = tuple(
        Arm(name=n, share=s, settings=o, config=SurfaceConfig.model_validate({**base.model_dump(), **o}))
        for n, s, o in arms
    )
    return Experiment(
        id=f"{name}-{secrets.token_hex(3)}",
        name=name,
        surface=surface,
        control=control,
        arms=built,
        started_at=time.time() if now is None else now,
        started_by=who,
    )


def namespace(version: str, experiment: Experiment, arm: Arm) -> str:
    return arm_namespace(version, experiment.key(arm))


class ArmResult(BaseModel):
    """What the dashboard shows of one arm (None where no figure exists yet)."""

    name: str
    share: float
    control: bool
    settings: dict[str, Any]
    requests_served: int
    requests_shown: int
    clicks: int
    clicks_per_request: float | None
    low: float | None
    high: float | None
    impressions: int
    fresh_impressions: int
    fresh_clicks: int
    lift: float | None = None
    lift_low: float | None = None
    lift_high: float | None = None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    significant: bool | None = None
    verdict: str | None = None
    # Per minute of the window: the running clicks per request since the start, its interval,
    # and (for non-control arms) the running lift over control with its interval.
    series: dict[str, list[float | None]] = Field(default_factory=dict)


def _num(x: float) -> float | None:
    return None if x != x else round(x, 5)  # NaN → None


def _sums(row: dict[str, int]) -> ArmSums:
    n, c, c2 = coin_totals(row)
    return ArmSums(n, c, c2)


def arm_results(
    experiment: Experiment, totals: dict[str, dict[str, int]], window: dict[str, list[dict[str, int]]]
) -> list[ArmResult]:
    """Each arm's figures from its counters: ``totals`` arm name → the running-total bucket,
    ``window`` arm name → the window's minute buckets (oldest first)."""
    control_total = _sums(totals.get(experiment.control, {}))
    control_series = _running(totals.get(experiment.control, {}), window.get(experiment.control, []))
    out = []
    for arm in experiment.arms:
        total = totals.get(arm.name, {})
        sums = _sums(total)
        est = clicks_per_request(sums)
        result = ArmResult(
            name=arm.name,
            share=arm.share,
            control=arm.name == experiment.control,
            settings=arm.settings,
            requests_served=total.get("req", 0),
            requests_shown=int(sums.n),
            clicks=int(sums.c),
            clicks_per_request=_num(est.mean),
            low=_num(est.low),
            high=_num(est.high),
            impressions=total.get("imp_explored", 0) + total.get("imp_exploited", 0),
            fresh_impressions=total.get("imp_fresh", 0),
            fresh_clicks=total.get("clk_fresh", 0),
        )
        minutes = window.get(arm.name, [])
        running = _running(total, minutes)
        series: dict[str, list[float | None]] = {
            "clicks_per_request": [],
            "low": [],
            "high": [],
            # Per minute, not running: when the arm finds (or stops showing) fresh items.
            "fresh_impressions": [float(row.get("imp_fresh", 0)) for row in minutes],
            "fresh_clicks": [float(row.get("clk_fresh", 0)) for row in minutes],
        }
        for s in running:
            e = clicks_per_request(s)
            series["clicks_per_request"].append(_num(e.mean))
            series["low"].append(_num(e.low))
            series["high"].append(_num(e.high))
        if arm.name != experiment.control:
            x: Lift = lift(sums, control_total, arm.name, experiment.control)
            result = result.model_copy(
                update={
                    "lift": _num(x.lift),
                    "lift_low": _num(x.lift_low),
                    "lift_high": _num(x.lift_high),
                    "diff": _num(x.diff),
                    "diff_low": _num(x.diff_low),
                    "diff_high": _num(x.diff_high),
                    "significant": x.significant,
                    "verdict": x.verdict,
                }
            )
            lifts = [lift(s, c) for s, c in zip(running, control_series, strict=True)]
            series["lift"] = [_num(v.lift) for v in lifts]
            series["lift_low"] = [_num(v.lift_low) for v in lifts]
            series["lift_high"] = [_num(v.lift_high) for v in lifts]
        out.append(result.model_copy(update={"series": series}))
    return out


def _running(total: dict[str, int], minutes: list[dict[str, int]]) -> list[ArmSums]:
    """The running sums at the end of each minute of the window: the total less what came
    after that minute (exact, whatever the window's length against the experiment's)."""
    after = ArmSums(0.0, 0.0, 0.0)
    out = []
    end = _sums(total)
    for row in reversed(minutes):
        out.append(ArmSums(end.n - after.n, end.c - after.c, end.c2 - after.c2))
        after = after + _sums(row)
    return out[::-1]
