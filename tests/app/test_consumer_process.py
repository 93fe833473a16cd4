"""`onlinematch consume` as a process: its own /metrics port, batches counted, and the group's
lag read from the broker (``om_consumer_group_lag_records``), on a real Redis and broker."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from bench.services import Broker, free_port
from tests.app.conftest import real_settings, without_calibration
from tests.app.test_real_services import ask, click


def sample(text: str, name: str) -> float | None:
    """The sum of a metric's samples in a Prometheus text exposition, or None when absent."""
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M)]
    return sum(values) if values else None


def test_a_consumer_process_exports_its_batches_and_the_broker_lag(
    bundle_dir: Path, redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    settings = real_settings(bundle_dir, redis_url, broker.bootstrap)
    port = free_port()
    env = {
        **os.environ,
        **{k.upper(): str(v) for k, v in settings.model_dump(exclude_none=True).items() if not isinstance(v, dict)},
        "OPERATOR_TOKEN": settings.operator_token.get_secret_value(),
        "METRICS_PORT": str(port),
        "HOST": "127.0.0.1",
    }
    onlinematch = str(Path(sys.executable).with_name("onlinematch"))
    with TestClient(create_app(settings)) as client:  # creates the topics, takes the feedback
        without_calibration(client)
        proc = subprocess.Popen([onlinematch, "consume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            text = ""
            while sample(text, "om_consumer_group_lag_timestamp_seconds") is None:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "no group lag read from the broker within 30 s"
                with contextlib.suppress(httpx.HTTPError):  # not listening yet
                    text = httpx.get(url, timeout=2).text
                time.sleep(0.2)
            before = sample(text, "om_consumer_batches_total") or 0.0
            data = ask(client)
            click(client, data, data["items"][0]["item_id"])
            while (sample(text, "om_consumer_batches_total") or 0.0) <= before:
                assert time.monotonic() < deadline + 30, "the consumer never counted a batch"
                text = httpx.get(url, timeout=2).text
                time.sleep(0.2)
            assert sample(text, "om_consumer_group_lag_records") is not None
            assert sample(text, "om_feedback_events_total") is not None
        finally:
            proc.terminate()
            proc.wait(timeout=20)
