"""`onlinematch serve --workers N`: worker processes on one port, on a real Redis and broker,
whose metrics add up to the service's, whichever worker answers the scrape (app/metrics.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.services import Broker, free_port
from tests.app.conftest import real_settings
from tests.app.test_consumer_process import sample


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_workers_share_one_port_and_their_metrics_add_up(bundle_dir: Path, redis_url: str, broker: Broker) -> None:
    settings = real_settings(bundle_dir, redis_url, broker.bootstrap)
    port = free_port()
    env = {
        **os.environ,
        **{k.upper(): str(v) for k, v in settings.model_dump(exclude_none=True).items() if not isinstance(v, dict)},
        "OPERATOR_TOKEN": settings.operator_token.get_secret_value(),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    onlinematch = str(Path(sys.executable).with_name("onlinematch"))
    cmd = [onlinematch, "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the workers never became ready"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        # uvicorn's supervisor forks a process per worker.
        assert len([p for p in _children(proc.pid) if Path(f"/proc/{p}/cmdline").exists()]) >= 2
        n = 40
        with httpx.Client(base_url=base, timeout=10) as c:
            before = sample(c.get("/metrics").text, 'om_http_requests_total{route="/v1/recommend",status="200"}')
            for u in range(n):
                r = c.post("/v1/recommend", json={"user_id": f"user-{u}", "k": 3}, headers={"Connection": "close"})
                assert r.status_code == 200, r.text
            # Every scrape, whichever worker answers it, counts all of them: one worker alone
            # would see only the requests it served.
            for _ in range(6):
                text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
                got = sample(text, 'om_http_requests_total{route="/v1/recommend",status="200"}')
                assert got == (before or 0.0) + n, text[:2000]
                assert sample(text, "om_decision_log_dropped") == 0.0
                assert 'om_bundle_info{version="' in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
