"""Pure-numpy bandit math: Diag-LinUCB and its baselines, slot selection, a synthetic world.

Nothing in this package performs I/O; storage and transport live in ``streaming/``.
"""

from bandits.diag import NO_DECAY, Decay, Deltas, DiagStats, SparseContext, aggregate, diag_scores
from bandits.policies import (
    DIAG_FAMILY,
    POLICY_NAMES,
    DiagLinUCB,
    DiagLinUCBConfig,
    DiagThompson,
    DiagThompsonConfig,
    EpsilonGreedy,
    EpsilonGreedyConfig,
    Feedback,
    Greedy,
    GreedyConfig,
    LinUCB,
    LinUCBConfig,
    LinUCBState,
    Policy,
    RandomConfig,
    RandomPolicy,
    Scores,
    config_fields,
    make_policy,
)
from bandits.slots import Slate, reserve_slots, select_slots, top_k

__all__ = [
    "DIAG_FAMILY",
    "NO_DECAY",
    "POLICY_NAMES",
    "Decay",
    "Deltas",
    "DiagLinUCB",
    "DiagLinUCBConfig",
    "DiagStats",
    "DiagThompson",
    "DiagThompsonConfig",
    "EpsilonGreedy",
    "EpsilonGreedyConfig",
    "Feedback",
    "Greedy",
    "GreedyConfig",
    "LinUCB",
    "LinUCBConfig",
    "LinUCBState",
    "Policy",
    "RandomConfig",
    "RandomPolicy",
    "Scores",
    "Slate",
    "SparseContext",
    "aggregate",
    "config_fields",
    "diag_scores",
    "make_policy",
    "reserve_slots",
    "select_slots",
    "top_k",
]
