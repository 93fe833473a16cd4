"""``make bench-experiment``: two live experiments on the demo, over HTTP, for ``--seconds``.

1. **Lift.** ``onlinematch demo`` runs with its synthetic world and its simulated users on
   surface ``demo``. Once their settings are in (``app.demo.DEMO_SURFACE``), an experiment
   starts there: ``control`` at α = 0 on 20% of users against ``default``, the demo's own
   settings, on 80%. The world implies the direction: items good or bad for everyone that the
   prior does not know, and fresh items it under-rates (``app.demo.DEMO_WORLD``), are found only
   by exploring, so ``default`` should draw more clicks per request. The figure is its lift
   over control with the 95% interval, and whether that interval excludes zero on that side.
2. **What-if.** A second set of the world's users (other click draws) asks on surface
   ``whatif``, split between arm ``p`` at ``explore_traffic`` 0.1 and arm ``q`` at 0.5, all else
   the demo's. From arm ``p``'s logged explore coins, the what-if estimate (SNIPS,
   ``bandits/whatif.py``) of clicks per request at 0.5, with its interval, is compared with
   arm ``q``'s realised clicks per request, on the same world at the same time; and the other
   way round (``q``'s logs priced at 0.1 against ``p``).

Every minute a progress line per arm; at the end a table and, as the last line, JSON.
``--seconds 600`` is the issue's 10 minutes; the bundle is trained once and cached in
``--bundle-dir``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from app.demo import DEMO_SURFACE, DEMO_WORLD, simulate_users
from bandits.world import World
from bench.services import free_port

TOKEN = "bench-experiment-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIFT = {
    "name": "alpha0",
    "control": "control",
    "arms": [
        {"name": "control", "share": 0.2, "settings": {"alpha": 0.0}},
        {"name": "default", "share": 0.8, "settings": {}},
    ],
}
P, Q = 0.1, 0.5
WHATIF = {
    "name": "dial",
    "control": "p",
    "arms": [
        {"name": "p", "share": 0.5, "settings": {"explore_traffic": P}},
        {"name": "q", "share": 0.5, "settings": {"explore_traffic": Q}},
    ],
}


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"onlinematch demo exited with {proc.returncode} during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"onlinematch demo was not ready within {timeout_s:.0f} s")


def start_when_configured(c: httpx.Client, surface: str, body: dict[str, Any]) -> str:
    """Start ``body`` on ``surface`` once the simulated users have put the demo's settings there
    (an arm takes the surface's settings at its start)."""
    deadline = time.monotonic() + 30
    while (
        c.get(f"/v1/admin/surfaces/{surface}", headers=AUTH).json()["explore_traffic"]
        != DEMO_SURFACE["explore_traffic"]
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"{surface}: the demo's settings never arrived")
        time.sleep(0.2)
    r = c.put(f"/v1/admin/surfaces/{surface}/experiment", json=body, headers=AUTH)
    r.raise_for_status()
    return str(r.json()["experiment"]["id"])


def arms_of(c: httpx.Client, surface: str) -> dict[str, dict[str, Any]]:
    view = c.get(f"/v1/admin/surfaces/{surface}/experiment", headers=AUTH).json()
    return {a["name"]: a for a in view["arms"]}


def line(a: dict[str, Any]) -> str:
    cpr = a["clicks_per_request"]
    ci = f"({a['low']:.3f}–{a['high']:.3f})" if a["low"] is not None else "(–)"
    lift = (
        ""
        if a["control"] or a["lift"] is None
        else f"  lift {a['lift']:+.1%} ({a['lift_low']:+.1%} to {a['lift_high']:+.1%})"
    )
    cpr_text = f"{cpr:.3f}" if cpr is not None else "–"
    return (
        f"{a['name']:>8}: {a['requests_shown']:6d} shown requests, {cpr_text} clicks/request {ci}, "
        f"fresh {a['fresh_impressions']} impressions / {a['fresh_clicks']} clicks{lift}"
    )


def at(curve: dict[str, Any], q: float) -> tuple[float | None, float | None, float | None]:
    i = curve["explore_traffic"].index(q)
    return curve["clicks_per_request"][i], curve["low"][i], curve["high"][i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second of each set of users")
    ap.add_argument("--bundle-dir", type=Path, default=Path("var/bench-experiment/bundles"))
    args = ap.parse_args()
    np.seterr(over="ignore")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OPERATOR_TOKEN": TOKEN, "LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "app.cli", "demo", "--port", str(port), "--bundle-dir", str(args.bundle_dir)]
    cmd += ["--retrain-every", "off", "--rate", str(args.rate)]
    print(f"bench-experiment: {' '.join(cmd[2:])}; {args.seconds:.0f} s of traffic", flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        wait_ready(base, proc)
        world = World(DEMO_WORLD)
        users = threading.Thread(
            target=simulate_users,
            args=(base, world, stop, TOKEN, args.rate),
            kwargs={"surface": "whatif", "seed": 2},
            daemon=True,
        )
        users.start()
        with httpx.Client(base_url=base, timeout=10) as c:
            lift_id = start_when_configured(c, "demo", LIFT)
            dial_id = start_when_configured(c, "whatif", WHATIF)
            print(f"started {lift_id} on demo and {dial_id} on whatif", flush=True)
            began = time.monotonic()
            while (left := args.seconds - (time.monotonic() - began)) > 0:
                time.sleep(min(60.0, left))
                print(f"--- {time.monotonic() - began:.0f} s", flush=True)
                for surface in ("demo", "whatif"):
                    for a in arms_of(c, surface).values():
                        print(f"  {surface} {line(a)}", flush=True)
            stop.set()
            time.sleep(3)  # the last feedback applied and counted
            lift_arms, dial = arms_of(c, "demo"), arms_of(c, "whatif")
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    default = lift_arms["default"]
    print("\nLift experiment (surface demo): control α = 0 on 20% against the demo's settings on 80%")
    for a in lift_arms.values():
        print("  " + line(a))
    print(f"  {default['verdict']}")
    direction_ok = bool(default["significant"] and default["diff_low"] is not None and default["diff_low"] > 0)
    print(f"  the world implies default > control: {'shown' if direction_ok else 'NOT shown'} by this run")

    print(f"\nWhat-if against a running arm (surface whatif): p at explore_traffic {P}, q at {Q}")
    checks = {}
    for src, dst, q in (("p", "q", Q), ("q", "p", P)):
        est, lo, hi = at(dial[src]["whatif"], q)
        real = dial[dst]["clicks_per_request"]
        inside = est is not None and lo is not None and hi is not None and real is not None and lo <= real <= hi
        checks[src] = {"estimate": est, "low": lo, "high": hi, "realised": real, "within": inside}
        print(
            f"  {src}'s logs priced at {q}: {est} (95% interval {lo} to {hi}); arm {dst} realised {real} "
            f"({dial[dst]['low']}–{dial[dst]['high']}): {'within' if inside else 'OUTSIDE'} the interval"
        )
    summary = {
        "seconds": args.seconds,
        "lift": default["lift"],
        "lift_low": default["lift_low"],
        "lift_high": default["lift_high"],
        "diff_low": default["diff_low"],
        "diff_high": default["diff_high"],
        "significant": default["significant"],
        "direction_ok": direction_ok,
        "control_requests": lift_arms["control"]["requests_shown"],
        "default_requests": default["requests_shown"],
        "whatif_p_to_q": checks["p"],
        "whatif_q_to_p": checks["q"],
        "whatif_within": bool(checks["p"]["within"] and checks["q"]["within"]),
    }
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
