"""Run an agent through a ``World``: decide, observe clicks, learn from delayed micro-batches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bandits.checks import FloatArray, IntArray
from bandits.diag import SparseContext
from bandits.policies import Feedback, Policy
from bandits.slots import select_slots
from bandits.world import World


class Agent(Protocol):
    """Anything that ranks candidates and learns from feedback (our policies and the peers)."""

    def act(self, t: int, context: SparseContext, items: IntArray, prior: FloatArray, k: int) -> IntArray:
        """Return positions into ``items`` for slots 0..k-1."""
        ...

    def learn(self, feedback: Feedback) -> None: ...


@dataclass
class PolicyAgent:
    """A registered policy with its state, exploring on ``explore_traffic`` of the decisions."""

    policy: Policy[Any]
    state: Any
    rng: np.random.Generator
    explore_slots: int = 1
    explore_traffic: float = 1.0

    @classmethod
    def of(
        cls, policy: Policy[Any], world: World, seed: int, explore_slots: int = 1, explore_traffic: float = 1.0
    ) -> PolicyAgent:
        # A pooled policy (``bandits/pooled.py``) keeps its pool coordinate after the clusters'.
        pooled = getattr(getattr(policy, "config", None), "lam_pool", None) is not None
        state = policy.init_state(world.config.n_items, world.dim + int(pooled))
        return cls(policy, state, np.random.default_rng(seed), explore_slots, explore_traffic)

    def act(self, t: int, context: SparseContext, items: IntArray, prior: FloatArray, k: int) -> IntArray:
        scores = self.policy.score(self.state, context, items, prior, self.rng, now=float(t))
        explore = self.explore_traffic >= 1.0 or self.rng.random() < self.explore_traffic
        return select_slots(scores.mean, scores.explore, k, self.explore_slots, explore).positions

    def learn(self, feedback: Feedback) -> None:
        self.policy.update(self.state, feedback)


@dataclass
class RunResult:
    """What one run produced.

    Attributes
    ----------
    clicks : realised clicks over the run
    expected : Σ expected clicks of the served slates
    oracle : Σ expected clicks of the best slates
    impressions : (n_items,) impressions per item
    seconds : time spent inside ``act`` and ``learn`` (the policy's own cost)
    decisions : rounds played
    """

    clicks: float
    expected: float
    oracle: float
    impressions: NDArray[np.int64]
    seconds: float
    decisions: int
    curve: list[float] = field(default_factory=list)

    @property
    def regret(self) -> float:
        return self.oracle - self.expected

    def fresh_discovery(self, world: World, threshold: int = 50) -> float:
        """Share of fresh items that reached ``threshold`` impressions."""
        fresh = world.fresh_items
        return float((self.impressions[fresh] >= threshold).mean()) if len(fresh) else 0.0

    @property
    def throughput(self) -> float:
        """Decisions (each with its share of updates) per second of policy time."""
        return self.decisions / self.seconds if self.seconds > 0 else float("inf")


def run(
    world: World,
    agent: Agent,
    k: int = 1,
    batch_size: int = 20,
    rounds: int | None = None,
    exam: FloatArray | None = None,
) -> RunResult:
    """Play ``rounds`` (default: the world's horizon) decisions of ``k`` slots each.

    Feedback reaches the agent in micro-batches of ``batch_size`` decisions, as it would from
    the stream: every decision in a batch is made before any of the batch's outcomes is known.
    ``exam`` (k,) is the examination weight the feedback carries for each slot, as serving fixes
    it in the request context (``bandits/position.py``); None carries 1 for every slot: position
    ignored, every click or miss read as if at the top.
    """
    weights = np.ones(k) if exam is None else np.asarray(exam, dtype=np.float64)
    if weights.shape != (k,):
        raise ValueError(f"exam: expected shape ({k},), got {weights.shape}")
    horizon = world.config.horizon if rounds is None else min(rounds, world.config.horizon)
    impressions = np.zeros(world.config.n_items, dtype=np.int64)
    clicks = expected = oracle = seconds = 0.0
    curve: list[float] = []
    pending: list[tuple[int, IntArray, FloatArray, FloatArray, SparseContext, FloatArray]] = []
    for t in range(horizon):
        user = int(world.users[t])
        items = world.candidates(t, user)
        ctx = world.context(user)
        prior = world.prior(user, items)
        start = time.perf_counter()
        positions = agent.act(t, ctx, items, prior, k)
        seconds += time.perf_counter() - start
        slate = items[positions]
        reward = world.click(t, user, slate)
        impressions[slate] += 1
        clicks += float(reward.sum())
        expected += world.expected(t, user, slate)
        oracle += world.oracle(t, user, len(slate), items)
        pending.append((t, slate, prior[positions], reward, ctx, weights[: len(slate)]))
        if len(pending) >= batch_size or t == horizon - 1:
            feedback = _to_feedback(pending)
            pending = []
            start = time.perf_counter()
            agent.learn(feedback)
            seconds += time.perf_counter() - start
        if (t + 1) % max(1, horizon // 20) == 0:
            curve.append(expected / (t + 1))
    return RunResult(clicks, expected, oracle, impressions, seconds, horizon, curve)


def _to_feedback(pending: list[tuple[int, IntArray, FloatArray, FloatArray, SparseContext, FloatArray]]) -> Feedback:
    n = sum(len(s) for _, s, *_ in pending)
    k = max(len(ctx.indices) for *_, ctx, _ in pending)
    items = np.empty(n, np.int64)
    indices = np.zeros((n, k), np.int64)
    weights = np.zeros((n, k))
    prior = np.empty(n)
    reward = np.empty(n)
    t_arr = np.empty(n)
    exam = np.empty(n)
    row = 0
    for t, slate, p, r, ctx, e in pending:
        m = len(slate)
        items[row : row + m] = slate
        indices[row : row + m, : len(ctx.indices)] = ctx.indices
        weights[row : row + m, : len(ctx.weights)] = ctx.weights
        prior[row : row + m] = p
        reward[row : row + m] = r
        t_arr[row : row + m] = t
        exam[row : row + m] = e
        row += m
    return Feedback(items, indices, weights, prior, reward, t_arr, exam)
