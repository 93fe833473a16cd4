"""``make bench-bandits``: every policy and both peers on the same seeded worlds.

Protocol (fair to everyone): each family gets the same small hyperparameter sweep on a tuning
seed that is not reported; the best setting of each family then runs on ``--seeds`` evaluation
seeds. Runs are paired (same world, same users, same click thresholds), so ratios are per-seed
ratios of Diag-LinUCB to the other policy, reported as mean with a 95% t-interval.

MABWiser's LinUCB is too slow for the full horizon, so its throughput is measured on the first
``--prefix`` rounds of each evaluation seed, against Diag-LinUCB on the same prefix, in the
same run. Each job runs in its own process, which is also how peak memory is measured
(``ru_maxrss`` growth during the run, so VW's native memory counts too).

The last line printed is one JSON object with the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits import DiagStats, LinUCB, LinUCBConfig, SparseContext, aggregate, diag_scores, make_policy
from bandits.simulate import Agent, PolicyAgent, run
from bandits.world import World, WorldConfig

TUNING_SEED = 1000
SLOTS = 4

# The Diag family's model is swept too: per-cluster residuals only (``lam_pool`` None, round 1)
# or with the item-level residual every cluster shares (``bandits/pooled.py``, the service's
# default at 4.0). Each family picks its own on the tuning seed, so greedy and epsilon-greedy
# get the pooled model whenever it serves them better, and the ratios to them measure
# exploration, not the model.
POOL: tuple[float | None, ...] = (None, 4.0, 16.0)


def _pooled(grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [g if lp is None else {**g, "lam_pool": lp} for lp in POOL for g in grid]


SWEEP: dict[str, list[dict[str, Any]]] = {
    "diag_linucb": _pooled([{"alpha": a} for a in (0.05, 0.1, 0.2, 0.4, 0.8)]),
    "diag_ts": _pooled([{"sigma": s} for s in (0.05, 0.1, 0.2, 0.4)]),
    "linucb": [{"alpha": a} for a in (0.05, 0.1, 0.2, 0.4, 0.8)],
    "epsilon_greedy": _pooled([{"epsilon": e} for e in (0.02, 0.05, 0.1, 0.2)]),
    "greedy": _pooled([{}]),
    "random": [{}],
    "vw": [{"args": a} for a in ("--epsilon 0.02", "--epsilon 0.05", "--epsilon 0.1")]
    + [{"args": f"--squarecb --gamma_scale {g}"} for g in (10, 100, 1000)],
}


@dataclass(frozen=True)
class Job:
    family: str
    params: dict[str, Any]
    seed: int
    rounds: int
    horizon: int


def make_agent(job: Job, world: World) -> Agent:
    if job.family == "vw":
        from bench.peers import VWAgent

        return VWAgent(str(job.params["args"]), job.seed)
    if job.family == "mabwiser":
        from bench.peers import MABWiserAgent

        return MABWiserAgent(world.config.n_items, world.dim, float(job.params["alpha"]), 1.0, job.seed)
    return PolicyAgent.of(make_policy(job.family, **job.params), world, job.seed)


def run_job(job: Job) -> dict[str, Any]:
    np.seterr(over="ignore")
    world = World(WorldConfig(seed=job.seed, horizon=job.horizon))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    agent = make_agent(job, world)
    result = run(world, agent, k=SLOTS, rounds=job.rounds)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "family": job.family,
        "params": job.params,
        "seed": job.seed,
        "rounds": job.rounds,
        "expected": result.expected,
        "oracle": result.oracle,
        "fresh": result.fresh_discovery(world),
        "throughput": result.throughput,
        "peak_mb": (after - before) / 1024.0,
    }


def run_all(jobs: list[Job], workers: int) -> list[dict[str, Any]]:
    # One process per job keeps ru_maxrss per run; fork keeps start-up cheap.
    with mp.get_context("fork").Pool(workers, maxtasksperchild=1) as pool:
        results = []
        for i, res in enumerate(pool.imap_unordered(run_job, jobs), 1):
            print(
                f"  [{i}/{len(jobs)}] {res['family']} {res['params']} seed={res['seed']}", file=sys.stderr, flush=True
            )
            results.append(res)
    return results


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% t-interval."""
    t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan")
    return mean, t975.get(n - 1, 1.96) * statistics.stdev(values) / np.sqrt(n)


def median_time(fn: Any, repeat: int, inner: int) -> float:
    """Median seconds per call over ``repeat`` batches of ``inner`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def micro() -> dict[str, float]:
    rng = np.random.default_rng(0)
    n, k, dim = 1000, 8, 64
    prior = rng.random(n)
    ctx = SparseContext.of(rng.choice(dim, k, replace=False), rng.dirichlet(np.ones(k)))
    d = 1.0 + rng.random((n, k)) * 10
    b = rng.standard_normal((n, k))
    score_s = median_time(lambda: diag_scores(prior, ctx.weights, d, b, 0.1), 50, 200)

    stats = DiagStats.empty(n, dim)
    items = np.arange(n)
    pol = make_policy("diag_linucb", alpha=0.1)
    gen = np.random.default_rng(1)
    score_gather_s = median_time(lambda: pol.score(stats, ctx, items, prior, gen), 30, 100)
    linucb = LinUCB(LinUCBConfig(alpha=0.1))
    lin_state = linucb.init_state(n, dim)
    linucb_s = median_time(lambda: linucb.score(lin_state, ctx, items, prior, gen), 10, 10)

    e = 10_000
    ev_items = rng.integers(0, 100_000, e)
    ev_idx = np.stack([rng.choice(dim, k, replace=False) for _ in range(e)])
    ev_w = rng.dirichlet(np.ones(k), e)
    ev_res = rng.random(e) - 0.1
    agg_s = median_time(lambda: aggregate(ev_items, ev_idx, ev_w, ev_res), 15, 3)

    def naive() -> None:
        sums: dict[tuple[int, int], list[float]] = {}
        for j, idx, w, r in zip(ev_items.tolist(), ev_idx.tolist(), ev_w.tolist(), ev_res.tolist(), strict=True):
            for f, wf in zip(idx, w, strict=True):
                cell = sums.setdefault((j, f), [0.0, 0.0])
                cell[0] += wf * wf
                cell[1] += wf * r

    naive_s = median_time(naive, 5, 1)
    return {
        "score_1000x8_us": score_s * 1e6,
        "score_with_gather_1000x8_us": score_gather_s * 1e6,
        "linucb_score_1000x8_dim64_us": linucb_s * 1e6,
        "aggregate_10k_ms": agg_s * 1e3,
        "aggregate_python_loop_10k_ms": naive_s * 1e3,
    }


def best_setting(sweep: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for res in sweep:
        fam = res["family"]
        if fam not in best or res["expected"] > best[fam]["expected"]:
            best[fam] = res
    return {fam: res["params"] for fam, res in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--prefix", type=int, default=300, help="rounds for the MABWiser throughput runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="bench/results/bandits.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cfg = WorldConfig(horizon=args.rounds)
    print(
        f"world: {cfg.n_items} items ({cfg.n_fresh} fresh), context dim {cfg.n_clusters} (K={cfg.k_nearest} active), "
        f"{cfg.n_candidates}+{cfg.fresh_pool} candidates per request, {SLOTS} slots, {args.rounds} requests; "
        f"tuning seed {TUNING_SEED}, evaluation seeds 0..{args.seeds - 1}",
        flush=True,
    )

    print("sweep on the tuning seed ...", flush=True)
    sweep_jobs = [Job(f, p, TUNING_SEED, args.rounds, args.rounds) for f, grid in SWEEP.items() for p in grid]
    sweep = run_all(sweep_jobs, args.workers)
    chosen = best_setting(sweep)
    for fam in SWEEP:
        print(f"  best {fam}: {chosen[fam]}", flush=True)

    print("evaluation seeds ...", flush=True)
    eval_jobs = [Job(f, chosen[f], s, args.rounds, args.rounds) for s in range(args.seeds) for f in SWEEP]
    eval_jobs += [Job("mabwiser", chosen["linucb"], s, args.prefix, args.rounds) for s in range(args.seeds)]
    eval_jobs += [Job("diag_linucb", chosen["diag_linucb"], s, args.prefix, args.rounds) for s in range(args.seeds)]
    evals = run_all(eval_jobs, args.workers)

    full = {(r["family"], r["seed"]): r for r in evals if r["rounds"] == args.rounds}
    prefix = {(r["family"], r["seed"]): r for r in evals if r["rounds"] == args.prefix}
    seeds = list(range(args.seeds))
    families = [*SWEEP]

    print()
    header = ("policy", "setting", "reward/req", "of oracle", "regret", "fresh≥50", "dec/s", "peak MB")
    print("{:<15} {:<36} {:>14} {:>10} {:>12} {:>10} {:>9} {:>8}".format(*header))
    for fam in families:
        rows = [full[(fam, s)] for s in seeds]
        rew, rew_ci = t_interval([r["expected"] / r["rounds"] for r in rows])
        of_oracle = statistics.fmean(r["expected"] / r["oracle"] for r in rows)
        regret = statistics.fmean(r["oracle"] - r["expected"] for r in rows)
        fresh = statistics.fmean(r["fresh"] for r in rows)
        tput = statistics.median(r["throughput"] for r in rows)
        mem = statistics.median(r["peak_mb"] for r in rows)
        setting = json.dumps(chosen[fam])[:36]
        print(
            f"{fam:<15} {setting:<36} {rew:>7.4f}±{rew_ci:<6.4f} {of_oracle:>10.1%} "
            f"{regret:>12.0f} {fresh:>10.1%} {tput:>9.0f} {mem:>8.1f}"
        )
    mab_tput = statistics.median(prefix[("mabwiser", s)]["throughput"] for s in seeds)
    diag_prefix_tput = statistics.median(prefix[("diag_linucb", s)]["throughput"] for s in seeds)
    mab_mem = statistics.median(prefix[("mabwiser", s)]["peak_mb"] for s in seeds)
    note = f"(first {args.prefix} requests only)"
    setting = json.dumps(chosen["linucb"])[:36]
    print(f"{'mabwiser linucb':<15} {setting:<36} {note:>36} {'':>22} {mab_tput:>9.0f} {mab_mem:>8.1f}")
    print(f"diag_linucb on the same {args.prefix}-request prefix: {diag_prefix_tput:.0f} decisions+updates/s")

    def ratio(other: str, key: str = "expected") -> tuple[float, float]:
        return t_interval([full[("diag_linucb", s)][key] / max(full[(other, s)][key], 1e-12) for s in seeds])

    def fresh_ratio(other: str) -> float | None:
        ours = statistics.fmean(full[("diag_linucb", s)]["fresh"] for s in seeds)
        theirs = statistics.fmean(full[(other, s)]["fresh"] for s in seeds)
        return None if theirs == 0 else ours / theirs

    print()
    print("Diag-LinUCB relative to (per-seed paired ratios of expected reward, mean ± 95% CI):")
    for other in ("linucb", "vw", "greedy", "epsilon_greedy", "diag_ts", "random"):
        m, ci = ratio(other)
        print(f"  {other:<15} {m:.3f} ± {ci:.3f}")

    print("micro-benchmarks (medians) ...", flush=True)
    mic = micro()
    for key, val in mic.items():
        print(f"  {key:<32} {val:10.1f}")

    summary = {
        "reward_vs_linucb": round(ratio("linucb")[0], 4),
        "reward_vs_vw_best": round(ratio("vw")[0], 4),
        "reward_vs_greedy": round(ratio("greedy")[0], 4),
        "reward_vs_random": round(ratio("random")[0], 4),
        "fresh_discovery_vs_greedy": None
        if fresh_ratio("greedy") is None
        else round(float(fresh_ratio("greedy") or 0), 4),
        "throughput_vs_linucb": round(diag_prefix_tput / mab_tput, 2),
        "throughput_vs_linucb_numpy": round(
            statistics.median(full[("diag_linucb", s)]["throughput"] for s in seeds)
            / statistics.median(full[("linucb", s)]["throughput"] for s in seeds),
            2,
        ),
        "vw_best": chosen["vw"]["args"],
        "seeds": args.seeds,
        "rounds": args.rounds,
        "score_1000x8_us": round(mic["score_1000x8_us"], 1),
        "aggregate_10k_ms": round(mic["aggregate_10k_ms"], 2),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    try:
        import pathlib

        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": summary, "chosen": chosen, "sweep": sweep, "evals": evals}, indent=1))
    except OSError as exc:
        print(f"could not write {args.out}: {exc}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
