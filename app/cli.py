"""The ``onlinematch`` command line.

``demo`` currently runs the bandit engine on the synthetic world, policies side by side, and
prints how each learns; the HTTP service, consumers and dashboard join it as they land.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from bandits import make_policy
from bandits.simulate import PolicyAgent, run
from bandits.world import World, WorldConfig

DEMO_POLICIES: tuple[tuple[str, dict[str, float]], ...] = (
    ("diag_linucb", {"alpha": 0.1}),
    ("diag_ts", {"sigma": 0.1}),
    ("greedy", {}),
    ("random", {}),
)


def demo(rounds: int, seed: int, k: int) -> int:
    world = World(WorldConfig(seed=seed, horizon=rounds))
    print(
        f"onlinematch demo: {world.config.n_items} items ({world.config.n_fresh} arriving fresh), "
        f"{world.config.n_clusters} user clusters, {rounds} requests of {k} slots, seed {seed}"
    )
    print(f"{'policy':<14} {'CTR/slate':>9} {'of oracle':>9} {'fresh≥50 imp':>12} {'decisions/s':>11}")
    for name, params in DEMO_POLICIES:
        agent = PolicyAgent.of(make_policy(name, **params), world, seed)
        result = run(world, agent, k=k)
        print(
            f"{name:<14} {result.expected / rounds:>9.3f} {result.expected / result.oracle:>9.1%} "
            f"{result.fresh_discovery(world):>12.0%} {result.throughput:>11,.0f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onlinematch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="simulated traffic through the bandit engine")
    p_demo.add_argument("--rounds", type=int, default=5000, help="simulated requests (default 5000)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--k", type=int, default=4, help="slots per response (default 4)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.rounds < 1 or not 1 <= args.k <= 10:
            parser.error("--rounds must be >= 1 and --k in 1..10")
        np.seterr(over="ignore")
        return demo(args.rounds, args.seed, args.k)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
