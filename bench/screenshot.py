"""``make screenshot``: the README's picture of the dashboard (``docs/dashboard.png``), taken after
a demo run rather than pasted by hand.

``onlinematch demo`` is started as it is by ``make run`` (embedded store and bus, the first
bundle trained by the offline job, simulated users with feedback; ``app/cli.py``), only on a free
loopback port, with an operator token of its own and a fresh bundle directory, so the page shows
what a first-time user sees. After ``--seconds`` of simulated traffic, and once the statistics
hold something for every panel, headless Debian chromium (driven by Playwright, as in
``tests/app/test_dashboard_browser.py``) opens ``/dashboard``, enters the token, waits for every
chart of the demo's surface to report drawn points and saves a full-page PNG at a fixed viewport.
The demo is stopped as by Ctrl-C, and killed if it does not stop, whatever happened before.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from app.demo import DEMO_SURFACE
from bench.experiment import LIFT as EXPERIMENT  # the picture shows the experiment bench-experiment measures
from bench.services import free_port

ROOT = Path(__file__).resolve().parents[1]
# The surface the demo's simulated users ask for (app/demo.py, simulate_users).
SURFACE = "demo"
# The flags of the browser test: no sandbox (containers, root) and no GPU on a headless host.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PR_SET_PDEATHSIG = 1


def say(text: str) -> None:
    print(f"screenshot: {text}", flush=True)


def _die_with_parent() -> None:
    # Runs in the child before exec: if this script is SIGKILLed (no finally runs), the kernel
    # kills the demo too instead of leaving it serving on its port.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_demo(port: int, token: str, bundles: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPERATOR_TOKEN": token, "ENVIRONMENT": "development"}
    for name in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):  # embedded defaults, whatever the shell has set
        env.pop(name, None)
    exe = str(Path(sys.executable).parent / "onlinematch")
    args = [exe, "demo", "--host", "127.0.0.1", "--port", str(port), "--bundle-dir", str(bundles)]
    # A session of its own: Ctrl-C on `make` reaches this script alone, which then stops the demo
    # once, in order (its users first), instead of both racing to shut it down.
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop_demo(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT as from Ctrl-C (the demo stops its users, then the server); the whole process group
    is killed if it is still there 30 s later."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            say("the demo did not stop within 30 s of SIGINT: killed")
    # Anything left in its group (the demo itself after a timeout) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until /readyz answers 200: the first bundle is trained before the server starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"onlinematch demo exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not become ready in {timeout_s:.0f} s")
        time.sleep(0.5)


def start_experiment(base: str, token: str, timeout_s: float = 30.0) -> None:
    """Start ``EXPERIMENT`` on the demo's surface once its users have put their settings there
    (an arm takes the surface's settings at the start)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, headers=headers, timeout=10.0) as c:
        while c.get(f"/v1/admin/surfaces/{SURFACE}").json()["explore_traffic"] != DEMO_SURFACE["explore_traffic"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo's settings never reached surface {SURFACE!r}")
            time.sleep(0.2)
        c.put(f"/v1/admin/surfaces/{SURFACE}/experiment", json=EXPERIMENT).raise_for_status()


def run_traffic(proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if proc.poll() is not None:
            raise RuntimeError(f"onlinematch demo exited with {proc.returncode} during the run")
        time.sleep(min(left, 1.0))


def missing_panels(stats: dict[str, Any]) -> list[str]:
    """What the demo surface's panels still lack; empty once every one has something to draw.
    Fresh items reaching 50 impressions and dead letters are counts that may rightly be 0."""
    surface = stats["surfaces"].get(SURFACE)
    if surface is None:
        return [f"surface {SURFACE!r}"]
    z, whatif = surface["series"], surface["whatif"]

    def some(values: list[float | None]) -> bool:
        return any(v for v in values if v is not None)

    wanted = {
        "exploration rate": some(z["exploration_rate"]),
        "explored impressions": some(z["impressions_explored"]),
        "exploited impressions": some(z["impressions_exploited"]),
        "explored CTR": some(z["ctr_explored"]),
        "exploited CTR": some(z["ctr_exploited"]),
        "impressions by age": any(some(v) for v in z["impressions_by_age"].values()),
        "learning freshness": some(z["freshness_p99_ms"]),
        "requests per second": some(z["requests_per_s"]),
        "latency": some(z["latency_p99_ms"]),
        "what-if curve": some(whatif["clicks_per_request"]),
        "realised clicks per request": whatif["realised"]["requests"] > 0,
        "experiment lift": bool(surface.get("experiment"))
        and any(some(a["series"].get("lift", [])) for a in surface["experiment"]["arms"]),
    }
    return [name for name, ok in wanted.items() if not ok]


def wait_for_panels(base: str, token: str, timeout_s: float) -> dict[str, Any]:
    """The stats once every panel has data: the consumer and the counters are asynchronous."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats: dict[str, Any] = httpx.get(
            f"{base}/v1/admin/stats", headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        ).json()
        missing = missing_panels(stats)
        if not missing:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(f"panels still without data after {timeout_s:.0f} s more: {', '.join(missing)}")
        time.sleep(1.0)


def screenshot(base: str, token: str, out: Path, width: int, height: int) -> list[str]:
    """The full page after the charts are drawn; returns what the page logged as errors."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium not found (Debian package chromium; `make screenshot` installs it)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/dashboard")
            # As an operator would: the form stores the token in sessionStorage ("om-token").
            page.fill("#token", token)
            page.click("#auth button")
            page.wait_for_selector("body[data-loaded=true]", timeout=15_000)
            # drawChart and drawWhatIf set data-points on their canvas once drawn: each of the demo
            # surface's eight charts, its what-if dial and its experiment's three charts must
            # have drawn something.
            page.wait_for_function(
                """(id) => {
                    const canvases = [...document.querySelectorAll(`#surface-${id} canvas`)];
                    return canvases.length >= 12 && canvases.every(c => Number(c.dataset.points || 0) > 0);
                }""",
                arg=SURFACE,
                timeout=15_000,
            )
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=75.0, help="simulated traffic before the picture")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in CSS pixels")
    parser.add_argument("--height", type=int, default=900, help="viewport height (the page is taken in full)")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="for training the first bundle and start")
    args = parser.parse_args()

    # SIGTERM (a CI runner cancelling, `kill`) takes the same path out as Ctrl-C, through the finally.
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    token = secrets.token_urlsafe(18)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="om-screenshot-"))
    log = work / "demo.log"
    started = time.monotonic()
    proc: subprocess.Popen[bytes] | None = None
    ok = failed = False
    try:
        say(f"onlinematch demo on {base}, training its first bundle in {work}")
        proc = start_demo(port, token, work / "bundles", log)
        wait_ready(base, proc, args.ready_timeout)
        start_experiment(base, token)
        say(f"ready after {time.monotonic() - started:.0f} s; {args.seconds:.0f} s of simulated traffic")
        run_traffic(proc, args.seconds)
        wait_for_panels(base, token, timeout_s=60.0)
        shot = work / "dashboard.png"
        errors = screenshot(base, token, shot, args.width, args.height)
        if errors:
            raise RuntimeError(f"the page logged errors: {errors}")
        # Only a page drawn without errors replaces the README's picture.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, args.out)
        ok = True
    except (RuntimeError, httpx.HTTPError) as exc:
        failed = True
        say(f"failed: {exc}")
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        if proc is not None:
            stop_demo(proc)
        # After a failure the demo's log and bundle stay for a look; otherwise nothing is left.
        if failed and log.exists():
            say(f"the demo's last lines (all of them, and its bundle, kept in {work}):")
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        return 1
    size = args.out.stat().st_size
    say(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} ({size / 1024:.0f} KB)")
    say(f"in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
