"""The ``onlinematch`` command line: ``demo``, ``serve``, ``consume``, ``train``, ``export-logs``,
``rebuild``, ``simulate``.

Settings come from the environment (``app/settings.py``); flags override a few for convenience.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog

from app.settings import Settings
from streaming.bus import Bus

log = structlog.get_logger(__name__)


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]  # validated by pydantic
    except ValueError as exc:
        raise SystemExit(f"onlinematch: invalid settings: {exc}") from exc


def serve(settings: Settings, workers: int = 1) -> int:
    import uvicorn

    from app.main import create_app

    print(f"onlinematch serving on http://{settings.host}:{settings.port} (embedded: {settings.embedded})", flush=True)
    if workers <= 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False)
        return 0
    if not (settings.redis_url and settings.kafka_bootstrap_servers):
        # The embedded store and bus live in one process: workers would not share them.
        raise SystemExit("onlinematch serve --workers: needs REDIS_URL and KAFKA_BOOTSTRAP_SERVERS (shared by workers)")
    # Each worker is a new process that builds its app from the environment (uvicorn needs an
    # import string for workers): the command line's settings go there, and the metrics
    # directory every worker writes to, a fresh one, since files of dead pids would be summed.
    metrics_dir = tempfile.mkdtemp(prefix="onlinematch-metrics-")
    os.environ.update(
        {"HOST": settings.host, "PORT": str(settings.port), "BUNDLE_DIR": str(settings.bundle_dir),
         "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    )  # fmt: skip
    try:
        uvicorn.run(
            "app.main:create_app_from_env", factory=True, workers=workers, host=settings.host, port=settings.port,
            log_level="warning", access_log=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def consume(settings: Settings) -> int:
    if not (settings.redis_url and settings.kafka_bootstrap_servers):
        raise SystemExit("onlinematch consume: REDIS_URL and KAFKA_BOOTSTRAP_SERVERS must both be set")
    from app.main import Services, consumer_for, ensure_topics, watch_group_lag
    from streaming.catalogue import follow_items

    services = Services.build(settings)
    ensure_topics(services.bus, settings)
    consumer = consumer_for(services)
    stop = threading.Event()
    if settings.metrics_port:
        from prometheus_client import start_http_server

        # Every consumer process its own /metrics: batches, apply time, errors, and the group's
        # lag read from the broker (app.main.watch_group_lag).
        try:
            start_http_server(settings.metrics_port, addr=settings.host, registry=services.metrics.registry)
            print(f"onlinematch consumer metrics on http://{settings.host}:{settings.metrics_port}/metrics", flush=True)
        except OSError as exc:
            # Feedback is not held back for want of metrics: this member's absence alert says it.
            log.warning("consumer_metrics_not_served", port=settings.metrics_port, error=str(exc))
    threading.Thread(target=watch_group_lag, args=(services, stop), name="group-lag", daemon=True).start()
    # The live catalogue: the items topic replayed into the store, then followed.
    follower = threading.Thread(
        target=follow_items, args=(services.bus, services.store, settings.items_topic, stop), daemon=True
    )
    follower.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"onlinematch consumer in group {settings.consumer_group} on {settings.feedback_topic}", flush=True)
    consumer.run(stop)
    return 0


def demo(settings: Settings, rate: float, retrain_every: str = "10m") -> int:
    import uvicorn

    from app.demo import DEMO_WORLD, DemoTally, ensure_demo_bundle, print_progress, retrain_every_period, simulate_users
    from app.main import create_app
    from bandits.world import World
    from offline.bundle import current_version

    np.seterr(over="ignore")
    world = World(DEMO_WORLD)
    period = None if retrain_every == "off" else _interval(retrain_every, "demo", "--retrain-every")
    if current_version(settings.bundle_dir) is None:
        print("onlinematch demo: training the first bundle on a history from the world (once, under a minute)")
    version = ensure_demo_bundle(settings.bundle_dir, world)
    url = f"http://{settings.host}:{settings.port}"
    print(f"onlinematch demo: bundle {version}, embedded: {settings.embedded}", flush=True)
    print(f"  API       {url}/v1/recommend", flush=True)
    print(f"  metrics   {url}/metrics", flush=True)
    print(f"  readiness {url}/readyz", flush=True)
    token = settings.operator_token.get_secret_value()
    print(f"  dashboard {url}/dashboard  (operator token: {token})", flush=True)
    if period is not None:
        print(f"  retrains  every {retrain_every} on what was served and clicked (--retrain-every off to stop)")
    stop = threading.Event()
    app = create_app(settings)

    class DemoServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            stop.set()  # the simulated users stop before the server closes their connections
            super().handle_exit(sig, frame)  # type: ignore[arg-type]  # uvicorn types the frame loosely

    server = DemoServer(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    tally = DemoTally()
    users = threading.Thread(
        target=_after_start,
        args=(server, lambda: simulate_users(url, world, stop, token, rate, tally=tally)),
        daemon=True,
    )
    users.start()
    progress = threading.Thread(
        target=_after_start, args=(server, lambda: print_progress(tally, app.state.services.metrics, stop)), daemon=True
    )
    progress.start()
    if period is not None:
        topics = (settings.decisions_topic, settings.feedback_topic)
        refresher = threading.Thread(
            target=_after_start,
            args=(
                server,
                lambda: retrain_every_period(period, settings.bundle_dir, app.state.services.bus, topics, stop),
            ),
            daemon=True,
        )
        refresher.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already shut down on gracefully
    finally:
        stop.set()
    print("onlinematch demo: stopped", flush=True)
    return 0


def _after_start(server: object, fn: object) -> None:
    while not getattr(server, "started", False):
        time.sleep(0.05)
    fn()  # type: ignore[operator]  # a plain callable


def _interval(text: str, command: str = "train", flag: str = "--every") -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise SystemExit(f"onlinematch {command}: {flag} {text!r}: expected a number and s/m/h/d, e.g. 6h") from None
    if value <= 0:
        raise SystemExit(f"onlinematch {command}: {flag} {text!r}: must be positive")
    return value * unit


def _log_bus(command: str, settings: Settings) -> Bus:
    if not settings.kafka_bootstrap_servers:
        raise SystemExit(f"onlinematch {command}: KAFKA_BOOTSTRAP_SERVERS must be set to read the service's topics")
    from streaming.kafka_bus import KafkaBus

    return KafkaBus(settings.kafka_bootstrap_servers, settings.kafka_timeout_s)


def export_logs(settings: Settings, out: Path) -> int:
    """The decisions and feedback topics, joined into an interactions file (offline/logs.py)."""
    from offline.logs import export_logs as export
    from streaming.bus import BusUnavailable

    try:
        joined = export(_log_bus("export-logs", settings), settings.decisions_topic, settings.feedback_topic, out)
    except (BusUnavailable, ValueError) as exc:
        print(f"onlinematch export-logs: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), **joined.summary()}), flush=True)
    return 0


def rebuild(
    settings: Settings, into: str | None, suffix: str, versions: Sequence[str], resume: bool, check: bool
) -> int:
    """Replay the decisions + feedback topics into an empty namespace or an empty Redis
    (``streaming/rebuild.py``); with ``check``, compare the result with the live namespaces."""
    from streaming.bus import BusUnavailable
    from streaming.events import EventError, check_key_part
    from streaming.rebuild import VERIFY_TOLERANCE, RebuildRefused, verify
    from streaming.rebuild import rebuild as replay
    from streaming.redis_store import RedisStore
    from streaming.stores import StoreUnavailable

    def fail(message: str) -> int:
        print(f"onlinematch rebuild: {message}", file=sys.stderr)
        return 2

    if not into and not suffix:
        return fail("give --suffix S (a copy beside the live namespaces) or --into REDIS_URL (an empty Redis)")
    if suffix:
        try:
            check_key_part("--suffix", f"v{suffix}")
        except EventError as exc:
            return fail(str(exc))
    target_url = into or settings.redis_url
    if not target_url:
        return fail("--suffix writes beside the live namespaces: REDIS_URL must be set (or give --into)")
    if check and (not settings.redis_url or (target_url == settings.redis_url and not suffix)):
        return fail("--verify compares with the live namespaces: it needs REDIS_URL and a target other than them")
    bus = _log_bus("rebuild", settings)
    # A longer timeout than serving's: a rebuild applies large batches and nobody waits on it.
    cluster, wait = settings.redis_cluster, settings.redis_wait_replicas
    target = RedisStore.from_url(target_url, timeout_s=10.0, cluster=cluster, wait_replicas=wait)
    live = RedisStore.from_url(settings.redis_url, timeout_s=10.0, cluster=cluster) if settings.redis_url else None
    births = None
    if live is not None:
        try:
            births = live.stats_versions()
        except StoreUnavailable:
            log.warning("rebuild_live_store_unavailable", note="versions' births unknown: partial rebuilds not told")
    try:
        report = replay(
            bus,
            target,
            decisions_topic=settings.decisions_topic,
            feedback_topic=settings.feedback_topic,
            dead_letter_topic=settings.dead_letter_topic,
            window_s=settings.attribution_window_s,
            versions=versions,
            suffix=suffix,
            resume=resume,
            restore_contexts=not suffix,
            births=births,
        )
    except (RebuildRefused, BusUnavailable, StoreUnavailable) as exc:
        return fail(str(exc))
    out: dict[str, object] = {"into": target_url if into else "live", **report.summary()}
    code = 0
    if check and live is not None:
        try:
            worst, bad = verify(live, target, report)
        except StoreUnavailable as exc:
            return fail(f"--verify: {exc}")
        out["max_relative_difference"] = worst
        out["verified"] = worst <= VERIFY_TOLERANCE
        out["differing_items"] = [{"version": v, "item": i, "difference": d} for v, i, d in bad]
        code = 0 if worst <= VERIFY_TOLERANCE else 1
    print(json.dumps(out), flush=True)
    return code


def train(
    interactions: Sequence[Path],
    items: Path,
    out: Path,
    every: str | None,
    from_topics: Settings | None = None,
    users: Path | None = None,
    retrieval: str = "factorisation",
) -> int:
    """Train once, or every period; with ``from_topics``, each run first exports the service's
    topics and trains on them too, so what was served and clicked feeds the next model."""
    from offline.bundle import BundleError
    from offline.data import DataError
    from offline.job import JobConfig, report_json, run_job
    from offline.logs import export_catalogue
    from offline.logs import export_logs as export
    from streaming.bus import BusUnavailable

    period = _interval(every) if every else None
    bus = _log_bus("train --from-topics", from_topics) if from_topics is not None else None
    while True:
        try:
            paths, catalogue = list(interactions), items
            if from_topics is not None and bus is not None:
                logs = out / ".work" / f"logs-{time.time_ns()}.csv"
                joined = export(bus, from_topics.decisions_topic, from_topics.feedback_topic, logs)
                log.info("exported_logs", path=str(logs), **joined.summary())
                paths.append(logs)
                # Items published since the last run are trained on like any other.
                merged = export_catalogue(
                    bus, from_topics.items_topic, items, out / ".work" / f"items-{time.time_ns()}.csv"
                )
                log.info("merged_catalogue", path=str(merged.path), **merged.summary())
                catalogue = merged.path
            config = JobConfig(retrieval=retrieval)
            report = run_job(paths, catalogue, out, config, users_path=users)  # the manifest records each input
        except (DataError, BundleError, BusUnavailable, ValueError) as exc:
            print(f"onlinematch train: {exc}", file=sys.stderr)
            if period is None:
                return 2
        else:
            print(report_json(report), flush=True)
            if period is None:
                return 0 if report.published else 1
        finally:
            for pattern in ("logs-*.csv", "items-*.csv"):  # one export per run, not an archive
                for stale in (out / ".work").glob(pattern):
                    stale.unlink(missing_ok=True)
        time.sleep(period)


def simulate(rounds: int, seed: int, k: int) -> int:
    from bandits import make_policy
    from bandits.simulate import PolicyAgent, run
    from bandits.world import World, WorldConfig

    np.seterr(over="ignore")
    world = World(WorldConfig(seed=seed, horizon=rounds))
    print(f"{world.config.n_items} items ({world.config.n_fresh} fresh), {rounds} requests of {k} slots, seed {seed}")
    print(f"{'policy':<14} {'CTR/slate':>9} {'of oracle':>9} {'fresh≥50 imp':>12} {'decisions/s':>11}")
    for name, params in (("diag_linucb", {"alpha": 0.1}), ("diag_ts", {"sigma": 0.1}), ("greedy", {}), ("random", {})):
        result = run(world, PolicyAgent.of(make_policy(name, **params), world, seed), k=k)
        print(
            f"{name:<14} {result.expected / rounds:>9.3f} {result.expected / result.oracle:>9.1%} "
            f"{result.fresh_discovery(world):>12.0%} {result.throughput:>11,.0f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onlinematch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("demo", "service + embedded bus + simulated users"), ("serve", "the HTTP service")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.add_argument("--bundle-dir")
        if name == "serve":
            p.add_argument(
                "--workers", type=int, default=1, help="worker processes on one port (needs Redis and Kafka)"
            )
        if name == "demo":
            p.add_argument("--rate", type=float, default=20.0, help="simulated requests per second")
            p.add_argument(
                "--retrain-every", default="10m", help="refresh the bundle from the demo's own logs, e.g. 10m, or off"
            )
    sub.add_parser("consume", help="a feedback consumer (needs REDIS_URL and KAFKA_BOOTSTRAP_SERVERS)")
    p_train = sub.add_parser("train", help="the offline job: train, evaluate, gate and publish a bundle")
    p_train.add_argument(
        "--interactions",
        nargs="*",
        default=[],
        type=Path,
        help="user_id,item_id,timestamp[,reward] files (CSV or Parquet), trained on together",
    )
    p_train.add_argument(
        "--from-topics",
        action="store_true",
        help="also train on the service's decisions + feedback topics (KAFKA_BOOTSTRAP_SERVERS)",
    )
    p_train.add_argument(
        "--items", required=True, type=Path, help="item_id[,created_at][,features...] (CSV or Parquet)"
    )
    p_train.add_argument(
        "--users", type=Path, help="user_id[,features...] (CSV or Parquet): the user tower embeds cold users"
    )
    p_train.add_argument("--out", required=True, type=Path, help="bundle root (versions + `current`)")
    p_train.add_argument("--every", help="repeat, e.g. 6h or 30m (default: once)")
    p_train.add_argument(
        "--retrieval",
        choices=["factorisation", "two_tower", "auto"],
        default="factorisation",
        help="the embeddings the bundle serves (offline/job.py, JobConfig.retrieval)",
    )
    p_export = sub.add_parser(
        "export-logs", help="join the decisions + feedback topics into an interactions file for `train`"
    )
    p_export.add_argument("--out", required=True, type=Path, help="CSV to write (user_id,item_id,timestamp,reward)")
    p_rebuild = sub.add_parser(
        "rebuild", help="replay the decisions + feedback topics into an empty namespace (--suffix) or Redis (--into)"
    )
    p_rebuild.add_argument("--into", metavar="REDIS_URL", help="an empty Redis to rebuild into, same version names")
    p_rebuild.add_argument("--suffix", default="", help="rebuild each version V as V+SUFFIX beside the live ones")
    p_rebuild.add_argument(
        "--version",
        action="append",
        default=[],
        dest="versions",
        help="a bundle version to rebuild (repeatable; default: every version still within retirement's horizon)",
    )
    p_rebuild.add_argument("--resume", action="store_true", help="continue an interrupted rebuild into the same target")
    p_rebuild.add_argument(
        "--verify", action="store_true", help="compare each rebuilt item with the live namespace; exit 1 if any differs"
    )
    p_sim = sub.add_parser("simulate", help="policies side by side on the synthetic world, offline")
    p_sim.add_argument("--rounds", type=int, default=5000)
    p_sim.add_argument("--seed", type=int, default=0)
    p_sim.add_argument("--k", type=int, default=4)
    args = parser.parse_args(argv)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ]
    )
    if args.command == "simulate":
        if args.rounds < 1 or not 1 <= args.k <= 10:
            parser.error("--rounds must be >= 1 and --k in 1..10")
        return simulate(args.rounds, args.seed, args.k)
    if args.command == "consume":
        return consume(_settings())
    if args.command == "train":
        if not args.interactions and not args.from_topics:
            parser.error("train: give --interactions FILE... and/or --from-topics")
        settings = _settings() if args.from_topics else None
        return train(
            args.interactions, args.items, args.out, args.every, settings, users=args.users, retrieval=args.retrieval
        )
    if args.command == "export-logs":
        return export_logs(_settings(), args.out)
    if args.command == "rebuild":
        return rebuild(_settings(), args.into, args.suffix, args.versions, args.resume, args.verify)
    settings = _settings(host=args.host, port=args.port, bundle_dir=args.bundle_dir)
    if args.command == "serve":
        if args.workers < 1:
            parser.error("serve: --workers must be >= 1")
        return serve(settings, args.workers)
    return demo(settings, args.rate, args.retrain_every)


if __name__ == "__main__":
    sys.exit(main())
