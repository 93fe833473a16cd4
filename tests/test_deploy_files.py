"""The deployment files stay in step with the code: they parse, and every variable is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {name.upper() for name in Settings.model_fields}


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_compose_services_use_only_real_settings() -> None:
    (compose,) = documents(ROOT / "docker-compose.yml")
    assert {"redis", "kafka", "api", "consumer"} <= set(compose["services"])
    for name in ("api", "consumer", "trainer"):
        env = compose["services"][name]["environment"]
        assert set(env) <= SETTINGS, set(env) - SETTINGS
    assert compose["services"]["consumer"]["command"] == ["onlinematch", "consume"]
    trainer = compose["services"]["trainer"]
    assert trainer["build"]["args"]["LOCK"] == "train"
    assert_train_args(trainer["command"])


def assert_train_args(args: list[str]) -> None:
    """The trainer's command line parses with the real CLI (without running it)."""
    from app import cli

    assert args[:2] == ["onlinematch", "train"]
    parsed: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "train", lambda *a, **kw: parsed.update(args=a, kwargs=kw) or 0)
        mp.setattr(cli, "_settings", lambda **_: Settings())
        assert cli.main(args[1:]) == 0
    interactions, items, out = parsed["args"][:3]  # type: ignore[index]  # captured positional args
    assert items == Path("/data/items.csv") and out == Path("/bundles") and interactions


@pytest.mark.parametrize("name", ["configmap.yaml", "secret.example.yaml"])
def test_k8s_config_keys_are_settings(name: str) -> None:
    (doc,) = documents(ROOT / "k8s" / name)
    keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
    assert keys and keys <= SETTINGS, keys - SETTINGS


def test_k8s_workloads_run_the_cli_and_probe_the_real_routes() -> None:
    kinds = {}
    for name in ("api.yaml", "consumer.yaml", "trainer.yaml"):
        for doc in documents(ROOT / "k8s" / name):
            kinds[(doc["kind"], doc["metadata"]["name"])] = doc
    api = kinds[("Deployment", "onlinematch-api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["args"] == ["onlinematch", "serve"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    consumer = kinds[("Deployment", "onlinematch-consumer")]["spec"]["template"]["spec"]["containers"][0]
    assert consumer["args"] == ["onlinematch", "consume"]
    assert ("HorizontalPodAutoscaler", "onlinematch-api") in kinds
    job = kinds[("CronJob", "onlinematch-trainer")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert_train_args(job["containers"][0]["args"])
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["volumes"]}
    api_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in kinds[("Deployment", "onlinematch-api")]["spec"]["template"]["spec"]["volumes"]
    }
    assert api_claims <= claims  # the trainer publishes where the API reads


def test_the_image_entry_point_is_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["onlinematch", "serve"]' in text
    assert "ARG LOCK=serve" in text and "pip install --require-hashes -r requirements/${LOCK}.txt" in text
    assert "torch" not in (ROOT / "requirements" / "serve.txt").read_text()  # serving image: no torch


def test_grafana_dashboard_queries_only_metrics_the_service_exports() -> None:
    import json
    import re

    from app.metrics import Metrics

    exported: set[str] = set()
    for family in Metrics().registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    dashboard = json.loads((ROOT / "k8s" / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bom_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 8
    # Labelled families only show their samples once a label is used; compare on family names.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported}
    missing = {n for n in used if re.sub(r"_(total|bucket|sum|count)$", "", n) not in families}
    assert not missing, missing
