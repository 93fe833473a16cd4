"""``GET /v1/admin/stats``: the one JSON document the dashboard draws (the last hour by minute)."""

from __future__ import annotations

import math
import time
from typing import Any

from app.experiments import Experiment, arm_results
from app.main import Services
from app.surfaces import SurfaceConfig
from bandits.whatif import EXPLORE, GREEDY, what_if
from streaming.events import arm_stats_key
from streaming.opstats import AGE_BUCKETS, FRESHNESS_MS, LATENCY_MS, coin_sums_of, minute_of, quantile
from streaming.stores import TOTAL_MINUTE, StoreUnavailable

# The what-if dial's values of explore_traffic, beside the current one: production runs 1-6%,
# and past a half the slates are mostly exploration.
WHATIF_GRID = tuple(round(0.05 * n, 2) for n in range(11))


def _series(rows: list[dict[str, int]], name: str) -> list[int]:
    return [row.get(name, 0) for row in rows]


def _ratio(num: list[int], den: list[int]) -> list[float | None]:
    return [round(n / d, 4) if d else None for n, d in zip(num, den, strict=True)]


def exploration_budget(config: SurfaceConfig, slots: list[int], requests: list[int]) -> list[float | None]:
    """The largest share of served slots the settings allow to explore, per minute:
    ``explore_traffic · min(explore_slots, k̄) / k̄`` with k̄ the mean slots per request."""
    out: list[float | None] = []
    for n_slots, n_req in zip(slots, requests, strict=True):
        if not n_req or not n_slots:
            out.append(None)
            continue
        k = n_slots / n_req
        out.append(round(config.explore_traffic * min(config.explore_slots, k) / k, 4))
    return out


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def whatif_curve(rows: list[dict[str, int]], config: SurfaceConfig) -> dict[str, Any]:
    """Clicks per request at each ``explore_traffic`` of ``WHATIF_GRID`` and the current one,
    estimated over the window's explore coins (SNIPS with its 95% interval, ``bandits/whatif.py``;
    None where not estimable, with the reason), and the realised value of the requests served at
    the current setting (their plain mean and its interval)."""
    current = float(config.explore_traffic)
    grid = sorted({*WHATIF_GRID, current})
    sums, seen = coin_sums_of(rows)
    est = what_if(sums, grid)
    here, _ = coin_sums_of(rows, only_p=current)
    # At q = p every weight is 1: IPS is the plain mean of those requests, interval and all.
    realised = what_if(here, [current])
    return {
        "explore_traffic": grid,
        "clicks_per_request": [_number(x) for x in est.snips.tolist()],
        "low": [_number(x) for x in est.snips_low.tolist()],
        "high": [_number(x) for x in est.snips_high.tolist()],
        "not_estimable": list(est.reasons),
        "current": current,
        "realised": {
            "clicks_per_request": _number(float(realised.ips[0])),
            "low": _number(float(realised.ips_low[0])),
            "high": _number(float(realised.ips_high[0])),
            "requests": here.requests,
        },
        "requests": {"explore": round(float(sums.n[EXPLORE])), "greedy": round(float(sums.n[GREEDY]))},
        "settings_seen": seen,
    }


def surface_series(rows: list[dict[str, int]], config: SurfaceConfig) -> dict[str, Any]:
    slots, explored = _series(rows, "slots"), _series(rows, "explored")
    imp_x, imp_g = _series(rows, "imp_explored"), _series(rows, "imp_exploited")
    clk_x, clk_g = _series(rows, "clk_explored"), _series(rows, "clk_exploited")
    return {
        "requests_per_s": [round(n / 60, 3) for n in _series(rows, "req")],
        "exploration_rate": _ratio(explored, slots),
        "exploration_budget": exploration_budget(config, slots, _series(rows, "req")),
        "impressions_explored": imp_x,
        "impressions_exploited": imp_g,
        "ctr_explored": _ratio(clk_x, imp_x),
        "ctr_exploited": _ratio(clk_g, imp_g),
        "impressions_by_age": {name: _series(rows, f"imp_age_{name}") for name, _ in AGE_BUCKETS},
        "fresh_items_reached_50": _series(rows, "fresh50"),
        "latency_p50_ms": [quantile(r, "lat", LATENCY_MS, 0.5) for r in rows],
        "latency_p99_ms": [quantile(r, "lat", LATENCY_MS, 0.99) for r in rows],
        "freshness_p50_ms": [quantile(r, "fresh", FRESHNESS_MS, 0.5) for r in rows],
        "freshness_p99_ms": [quantile(r, "fresh", FRESHNESS_MS, 0.99) for r in rows],
        "degraded": _series(rows, "degraded"),
        "dead_letters": _series(rows, "dead"),
    }


def experiment_view(svc: Services, experiment: Experiment, window: list[int]) -> dict[str, Any]:
    """An experiment and each arm's figures (``app.experiments.arm_results``) over ``window``
    (minutes since the epoch, oldest first); raises ``StoreUnavailable``."""
    totals, rows = {}, {}
    for arm in experiment.arms:
        key = arm_stats_key(experiment.surface, experiment.key(arm))
        # The window first: a flush between the two reads then only makes the total larger than
        # the window's sum, never smaller (``_running`` subtracts the window from the total).
        rows[arm.name] = svc.store.read_stats(key, window)
        totals[arm.name] = svc.store.read_stats(key, [TOTAL_MINUTE])[0]
    # Each arm's what-if curve over its whole run: what other explore_traffic values would have
    # drawn immediately on its slates (bench/experiment.py checks one against an arm running it).
    return {
        "experiment": experiment.model_dump(mode="json"),
        "arms": [
            {**r.model_dump(mode="json"), "whatif": whatif_curve([totals[arm.name]], arm.config)}
            for r, arm in zip(arm_results(experiment, totals, rows), experiment.arms, strict=True)
        ],
    }


def window_minutes(now: float, minutes: int = 60) -> list[int]:
    return list(range(minute_of(now) - minutes + 1, minute_of(now) + 1))


def build_stats(svc: Services, minutes: int = 60) -> dict[str, Any]:
    now = time.time()
    window = window_minutes(now, minutes)
    body: dict[str, Any] = {"now": now, "minutes": [m * 60 for m in window], "surfaces": {}, "degraded": []}
    bundle = svc.bundles.current if svc.bundles.loaded else None
    body["bundle"] = (
        {"version": bundle.version, "created_at": bundle.created_at, "age_s": round(now - bundle.created_at, 1)}
        if bundle
        else None
    )
    try:
        configs = svc.surfaces.all()
        # An experiment arm's counters (``<surface>@<arm>``) are drawn in its surface's panel.
        surfaces = {n for n in svc.store.stats_surfaces() if "@" not in n}
        names = sorted((surfaces | set(configs) | {"default"}) - {"_unknown"})
        rows_by_name = {name: svc.store.read_stats(name, window) for name in names}
        # Busiest surfaces first: an idle one should not push a live one below the fold.
        for name in sorted(names, key=lambda n: -sum(r.get("req", 0) for r in rows_by_name[n])):
            config = configs.get(name) or svc.surfaces.get(name)
            body["surfaces"][name] = {
                "config": config.model_dump(),
                "series": surface_series(rows_by_name[name], config),
                "whatif": whatif_curve(rows_by_name[name], config),
                "learnt": svc.recommender.learnt_model(name) if bundle else None,
            }
            experiment = svc.surfaces.experiment(name)
            body["surfaces"][name]["experiment"] = (
                experiment_view(svc, experiment, window) if experiment is not None else None
            )
        unknown = svc.store.read_stats("_unknown", window)
        body["dead_letters_unknown_request"] = _series(unknown, "dead")
        body["consumer_lag"] = {str(p): n for p, n in sorted(svc.store.get_lag(svc.settings.consumer_group).items())}
        body["changes"] = svc.surfaces.changes(50)
    except StoreUnavailable:
        body["degraded"].append("statistics store unreachable")
    return body
