"""What-if estimates for a surface's ``explore_traffic``: off-policy, over the explore coin only.

Each request tosses one coin: with probability ``p`` (the surface's ``explore_traffic`` when it
was served) the slate explores, else it is greedy. Given the statistics, that coin is the only
randomisation of a slate, so ``p`` is a known propensity, logged with the decision
(``RequestContext.explore_coin`` / ``explore_p``). Another value ``q`` is a policy that differs
from the logged one in that coin alone, and its immediate clicks per request are estimated by
re-weighting each logged request by the ratio of the two coins' probabilities of what happened:

    w_i(q) = q / p_i            if request i's coin came up explore
           = (1 − q) / (1 − p_i)  if it came up greedy

    IPS(q)   = (1/N) Σ w_i c_i
    SNIPS(q) = Σ w_i c_i / Σ w_i

with ``c_i`` the clicks on request i (Horvitz & Thompson 1952; self-normalised: Swaminathan &
Joachims, NeurIPS 2015). Both are consistent; SNIPS has the smaller variance when weights vary
and is what the dashboard shows. Because ``w_i`` is ``q`` or ``1 − q`` times a per-request
constant ``ρ_i`` (``1/p_i``, resp. ``1/(1 − p_i)``), every quantity below is linear in a few sums
per coin side (``CoinSums``): additive, so a live consumer can keep them, and one pass serves
a whole grid of ``q``.

Confidence intervals (95%, normal approximation): IPS uses the sample variance of ``w_i c_i``
over N; SNIPS the delta method for a ratio of means,
``Var ≈ N/(N−1) · Σ w_i² (c_i − SNIPS)² / (Σ w_i)²``. They assume independent requests (a
user's repeated requests are treated as independent) and enough requests on each side the
target coin takes for the normal approximation (tens, not a handful).

What is priced: the coin, with everything else as logged. The statistics each slate was scored
with stay as they were, so the estimate is exploration's **immediate** cost or gain in clicks;
what a different ``q`` would have taught the model (its long-term value) is not in it, and is
what an experiment with a control arm measures.

Support. A ``q`` is **not estimable** (``WhatIf.reasons``) when the log cannot say what it
would have clicked: some request was served with ``p = 0`` and ``q > 0`` (its explore weight
``q/0`` is undefined: it never explored), some with ``p = 1`` and ``q < 1``, or no request at
all came up on a side that ``q`` takes. The estimate there is NaN, never a number made up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bandits.checks import FloatArray, as_float

EXPLORE, GREEDY = 0, 1  # index of a coin side in every (2,) array below
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class CoinSums:
    """Additive sufficient statistics of logged explore coins, per coin side.

    With ``ρ_i = 1/p_i`` for a request whose coin came up explore and ``1/(1 − p_i)`` for one
    that came up greedy, and ``c_i`` its clicks:

    Attributes
    ----------
    n : (2,) requests, [explore side, greedy side]
    w : (2,) Σ ρ_i
    w2 : (2,) Σ ρ_i²
    wc : (2,) Σ ρ_i c_i
    w2c : (2,) Σ ρ_i² c_i
    w2c2 : (2,) Σ ρ_i² c_i²
    certain : (2,) requests whose coin could only come up on this side: ``p = 1`` (explore),
        ``p = 0`` (greedy). They limit which ``q`` are estimable (module docstring).

    Sums over disjoint sets of requests add up (``+``), so per-minute sums make an hour's.
    """

    n: FloatArray
    w: FloatArray
    w2: FloatArray
    wc: FloatArray
    w2c: FloatArray
    w2c2: FloatArray
    certain: FloatArray

    @classmethod
    def empty(cls) -> CoinSums:
        return cls(*(np.zeros(2) for _ in range(7)))

    def __add__(self, other: CoinSums) -> CoinSums:
        return CoinSums(
            self.n + other.n,
            self.w + other.w,
            self.w2 + other.w2,
            self.wc + other.wc,
            self.w2c + other.w2c,
            self.w2c2 + other.w2c2,
            self.certain + other.certain,
        )

    @property
    def requests(self) -> int:
        return round(float(self.n.sum()))


def coin_sums(
    explore: ArrayLike,
    p: ArrayLike,
    clicks: ArrayLike,
    count: ArrayLike | None = None,
    clicks_sq: ArrayLike | None = None,
) -> CoinSums:
    """The sums of logged requests, one row each, or one row per group of requests that share a
    coin outcome and ``p`` (what a live counter keeps).

    Parameters
    ----------
    explore : (R,) bool, the coin's outcome
    p : (R,) the probability the coin had of coming up explore; rows with ``p < 0`` (no coin
        was tossed: a degraded response) are left out
    clicks : (R,) clicks of the request, or summed over the group
    count : (R,) requests in the group (default 1: one row per request)
    clicks_sq : (R,) Σ c² over the group (default ``clicks²``: one row per request)

    >>> s = coin_sums([True, False, False], [0.5, 0.5, -1.0], [1.0, 2.0, 9.0])
    >>> s.n.tolist(), s.wc.tolist(), s.w2c2.tolist()
    ([1.0, 1.0], [2.0, 4.0], [4.0, 16.0])
    """
    x = np.asarray(explore)
    if x.ndim != 1 or (x.size and x.dtype != np.bool_):
        raise ValueError(f"explore: expected a 1-d bool array, got dtype {x.dtype} shape {x.shape}")
    prob = as_float("p", p, 1)
    c = as_float("clicks", clicks, 1)
    n = np.ones(len(c)) if count is None else as_float("count", count, 1)
    c2 = c * c if clicks_sq is None else as_float("clicks_sq", clicks_sq, 1)
    lengths = [len(x), len(prob), len(c), len(n), len(c2)]
    if len(set(lengths)) > 1:
        raise ValueError(f"explore/p/clicks/count/clicks_sq: need equal lengths, got {lengths}")
    x = x.astype(bool)
    tossed = prob >= 0
    x, prob, c, n, c2 = x[tossed], prob[tossed], c[tossed], n[tossed], c2[tossed]
    if (prob > 1).any():
        raise ValueError(f"p: must lie in [0, 1] (or < 0 for no coin), got {float(prob.max())}")
    if (x & (prob == 0)).any() or (~x & (prob == 1)).any():
        raise ValueError("explore: a coin with p = 0 came up explore, or one with p = 1 came up greedy")
    if (n < 0).any() or (c < 0).any() or (c2 < 0).any():
        raise ValueError("count/clicks/clicks_sq: must be >= 0")
    side = np.where(x, EXPLORE, GREEDY)
    with np.errstate(divide="ignore"):
        # The logged side's probability is never 0 (checked above); where it would be, it is
        # the other branch of np.where, evaluated and discarded.
        rho = np.where(x, 1.0 / prob, 1.0 / (1.0 - prob))

    def per_side(values: FloatArray) -> FloatArray:
        return np.bincount(side, weights=values, minlength=2).astype(np.float64)

    certain = np.where(x, prob == 1, prob == 0)
    return CoinSums(
        n=per_side(n),
        w=per_side(n * rho),
        w2=per_side(n * rho * rho),
        wc=per_side(c * rho),
        w2c=per_side(c * rho * rho),
        w2c2=per_side(c2 * rho * rho),
        certain=per_side(n * certain),
    )


@dataclass(frozen=True)
class WhatIf:
    """Estimates of the clicks per request at each ``q``; NaN where ``q`` is not estimable.

    Attributes
    ----------
    q : (Q,) the values of ``explore_traffic`` asked about
    ips, ips_low, ips_high : (Q,) IPS and its 95% interval (normal approximation)
    snips, snips_low, snips_high : (Q,) SNIPS and its 95% interval (delta method)
    reasons : Q entries, None where estimable, else why not (in words, for an operator)
    requests : requests the estimate is over (both sides)
    """

    q: FloatArray
    ips: FloatArray
    ips_low: FloatArray
    ips_high: FloatArray
    snips: FloatArray
    snips_low: FloatArray
    snips_high: FloatArray
    reasons: tuple[str | None, ...]
    requests: int

    @property
    def estimable(self) -> NDArray[np.bool_]:
        return np.array([r is None for r in self.reasons], dtype=bool)


def unsupported(sums: CoinSums, q: float) -> str | None:
    """Why ``q`` is not estimable from ``sums`` (the module's support rules), or None."""
    never, always = int(sums.certain[GREEDY]), int(sums.certain[EXPLORE])
    if sums.requests == 0:
        return "no request with a logged coin yet"
    if sums.requests == 1:
        return "one request with a logged coin: too few for an interval"
    if q > 0 and never:
        return f"{never} requests were served with explore_traffic 0: nothing says what exploring them would click"
    if q < 1 and always:
        return f"{always} requests were served with explore_traffic 1: nothing says what greedy slates would click"
    if q > 0 and sums.n[EXPLORE] == 0:
        return "no logged request explored: nothing says what exploring would click"
    if q < 1 and sums.n[GREEDY] == 0:
        return "no logged request was greedy: nothing says what greedy slates would click"
    return None


def what_if(sums: CoinSums, q: ArrayLike) -> WhatIf:
    """IPS and SNIPS estimates of the clicks per request at each ``q`` (Q,), with 95% intervals.

    >>> explore = np.array([True, False, False, False, False])  # logged at p = 0.2
    >>> sums = coin_sums(explore, np.full(5, 0.2), np.array([0.0, 1.0, 0.0, 1.0, 0.0]))
    >>> est = what_if(sums, [0.0, 0.2, 1.0])
    >>> est.snips.round(3).tolist(), est.ips.round(3).tolist()
    ([0.5, 0.4, 0.0], [0.5, 0.4, 0.0])
    >>> bool(est.snips_low[1] < 0.4 < est.snips_high[1])
    True
    >>> what_if(coin_sums(np.zeros(3, bool), np.zeros(3), np.ones(3)), [0.0, 0.1]).reasons[1]
    '3 requests were served with explore_traffic 0: nothing says what exploring them would click'
    """
    qs = as_float("q", q, 1)
    if ((qs < 0) | (qs > 1)).any():
        raise ValueError(f"q: must lie in [0, 1], got {qs.tolist()}")
    reasons = tuple(unsupported(sums, float(v)) for v in qs)
    a = np.stack([qs, 1.0 - qs], axis=1)  # (Q, 2): the target coin's probability of each side
    N = float(sums.n.sum())
    num = a @ sums.wc  # Σ w_i c_i
    den = a @ sums.w  # Σ w_i
    sq = (a * a) @ sums.w2c2  # Σ (w_i c_i)²
    with np.errstate(divide="ignore", invalid="ignore"):
        ips = num / N
        ips_var = np.maximum(sq - N * ips * ips, 0.0) / (N - 1) / N
        snips = num / den
        resid = (a * a) @ sums.w2c2 - 2 * snips * ((a * a) @ sums.w2c) + snips * snips * ((a * a) @ sums.w2)
        snips_var = np.maximum(resid, 0.0) / (den * den) * N / (N - 1)
    bad = ~np.array([r is None for r in reasons], dtype=bool)

    def masked(values: FloatArray) -> FloatArray:
        return np.where(bad, np.nan, values)

    ips_half, snips_half = Z95 * np.sqrt(ips_var), Z95 * np.sqrt(snips_var)
    return WhatIf(
        q=qs,
        ips=masked(ips),
        ips_low=masked(ips - ips_half),
        ips_high=masked(ips + ips_half),
        snips=masked(snips),
        snips_low=masked(snips - snips_half),
        snips_high=masked(snips + snips_half),
        reasons=reasons,
        requests=sums.requests,
    )
