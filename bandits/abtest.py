"""Arms of a live experiment: clicks per request with a 95% interval, and the lift over control.

An experiment (``app/experiments.py``) splits a surface's users between arms by a stable hash
of ``user_id``; each arm serves with its own settings and learns in its own statistics
namespace, so an arm's clicks per request measure what its policy does *in the long run*,
learning included (the what-if dial, ``bandits/whatif.py``, prices only the immediate cost).

Per arm the consumer keeps three additive sums over the requests whose top slot was shown
(``streaming/opstats.py``): ``n`` requests, ``c = Σ c_i`` clicks and ``c2 = Σ c_i²``. Then

    mean = c / n
    var  = (c2 − n · mean²) / (n − 1)          (sample variance of c_i)
    se   = sqrt(var / n)

and for an arm a against the control arm 0 (independent samples: users are split, not
requests)

    diff     = mean_a − mean_0,   se_diff = sqrt(se_a² + se_0²)
    lift     = mean_a / mean_0 − 1
    se_lift ≈ sqrt((se_a / mean_0)² + (mean_a · se_0 / mean_0²)²)              (delta method)

with 95% intervals ``± 1.96 · se`` (normal approximation; Kohavi, Tang & Xu 2020, ch. 17 and
18 on the delta method for ratios). The difference is called significant when its interval
excludes zero. Requests of one user are treated as independent, which understates the
variance when users repeat; with many users per arm the effect is small, and the verdict
uses ``diff``, whose interval does not depend on the ratio's approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bandits.whatif import Z95

# Below this many shown requests on either side no interval is given: the normal
# approximation means nothing for a handful.
MIN_REQUESTS = 30


@dataclass(frozen=True)
class ArmSums:
    """Additive sums of one arm: ``n`` shown requests, ``c`` their clicks, ``c2`` Σ clicks²."""

    n: float
    c: float
    c2: float

    def __add__(self, other: ArmSums) -> ArmSums:
        return ArmSums(self.n + other.n, self.c + other.c, self.c2 + other.c2)


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval; NaN when there are too few requests for one."""

    mean: float
    low: float
    high: float
    n: int


def clicks_per_request(s: ArmSums) -> Estimate:
    """Clicks per shown request and its 95% interval.

    >>> e = clicks_per_request(ArmSums(n=100, c=50, c2=70))
    >>> round(e.mean, 3), round(e.low, 3), round(e.high, 3)
    (0.5, 0.368, 0.632)
    >>> math.isnan(clicks_per_request(ArmSums(3, 1, 1)).low)
    True
    """
    if s.n <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = s.c / s.n
    if s.n < MIN_REQUESTS:
        return Estimate(mean, math.nan, math.nan, int(s.n))
    half = Z95 * _se(s, mean)
    return Estimate(mean, mean - half, mean + half, int(s.n))


def _se(s: ArmSums, mean: float) -> float:
    # Σ c² can be read high (streaming/opstats.py), never low; clamp the round-off below 0.
    var = max(0.0, (s.c2 - s.n * mean * mean) / (s.n - 1))
    return math.sqrt(var / s.n)


@dataclass(frozen=True)
class Lift:
    """An arm against control: the difference in clicks per request and the relative lift,
    each with its 95% interval, and a verdict in plain words."""

    diff: float
    diff_low: float
    diff_high: float
    lift: float
    lift_low: float
    lift_high: float
    significant: bool
    verdict: str


def lift(arm: ArmSums, control: ArmSums, name: str = "arm", control_name: str = "control") -> Lift:
    """``arm`` against ``control`` (both ``ArmSums``), as the module docstring defines.

    >>> x = lift(ArmSums(1000, 600, 900), ArmSums(1000, 400, 560), "explore", "control")
    >>> round(x.diff, 3), round(x.lift, 3), x.significant
    (0.2, 0.5, True)
    >>> x.verdict
    'explore draws 50.0% more clicks per request than control (95% interval +31.4% to +68.6%): significant'
    >>> lift(ArmSums(10, 5, 5), ArmSums(10, 4, 4)).significant
    False
    """
    a, c = clicks_per_request(arm), clicks_per_request(control)
    if a.n < MIN_REQUESTS or c.n < MIN_REQUESTS:
        need = MIN_REQUESTS - min(a.n, c.n)
        nan = math.nan
        return Lift(
            a.mean - c.mean if a.n and c.n else nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            False,
            f"too few shown requests for an interval yet ({need} more on the smaller side)",
        )
    se_a, se_c = _se(arm, a.mean), _se(control, c.mean)
    diff = a.mean - c.mean
    half = Z95 * math.hypot(se_a, se_c)
    significant = diff - half > 0 or diff + half < 0
    if c.mean > 0:
        ratio = a.mean / c.mean
        # The delta method, in the form that stays finite when the arm drew no click.
        se_ratio = math.hypot(se_a / c.mean, a.mean * se_c / c.mean / c.mean)
        rel, rel_low, rel_high = ratio - 1, ratio - 1 - Z95 * se_ratio, ratio - 1 + Z95 * se_ratio
    else:
        rel = rel_low = rel_high = math.nan
    if math.isnan(rel) or math.isinf(rel_high):
        size = (
            f"{diff:+.4f} clicks per request against {control_name} "
            f"(95% interval {diff - half:+.4f} to {diff + half:+.4f})"
        )
    else:
        # Below 0.05% the lift prints as 0.0%: "more" or "fewer" would only be round-off.
        more = "as many" if abs(rel) < 5e-4 else f"{abs(rel):.1%} more" if rel > 0 else f"{abs(rel):.1%} fewer"
        size = (
            f"draws {more} clicks per request {'as' if abs(rel) < 5e-4 else 'than'} {control_name} "
            f"(95% interval {rel_low:+.1%} to {rel_high:+.1%})"
        )
    verdict = f"{name} {size}: " + ("significant" if significant else "not significant yet, the interval spans 0")
    return Lift(diff, diff - half, diff + half, rel, rel_low, rel_high, significant, verdict)
