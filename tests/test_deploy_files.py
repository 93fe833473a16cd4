"""The deployment files stay in step with the code: they parse, every variable is a setting, and
they are valid against the Kubernetes and compose-spec schemas (offline: both schemas ship in
dev-extra wheels, kubernetes-validate and check-jsonschema)."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {name.upper() for name in Settings.model_fields}
# The Kubernetes release the manifests are checked against (its schemas ship in kubernetes-validate).
KUBERNETES_VERSION = "1.30"


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every YAML file in k8s/, with its file's name."""
    return [
        (path.name, doc)
        for path in sorted((ROOT / "k8s").iterdir())
        if path.suffix in {".yaml", ".yml"}
        for doc in documents(path)
    ]


def k8s_kinds() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents()}


def with_value(doc: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """A deep copy of ``doc`` with ``value`` set at ``path`` (the last key need not exist)."""
    broken = copy.deepcopy(doc)
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


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
    kinds = k8s_kinds()
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


K8S_DOCUMENTS = k8s_documents()


@pytest.mark.parametrize(
    "doc", [doc for _, doc in K8S_DOCUMENTS], ids=[f"{name}:{d['kind']}" for name, d in K8S_DOCUMENTS]
)
def test_k8s_manifests_match_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    # Strict: a field the schema does not know (a misspelling) is refused, not ignored as the
    # API server would. A kind without a schema raises SchemaNotFoundError and fails too.
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replica"), 4),  # misspelled field
        (("spec", "replicas"), "4"),  # wrong type
        (("spec", "template", "spec", "containers", 0, "envForm"), []),  # misspelled, deep inside
        (("spec", "template", "spec", "containers", 0, "resources", "limits"), "1Gi"),  # wrong type
    ],
)
def test_the_kubernetes_schema_refuses_a_broken_manifest(path: tuple[str | int, ...], value: object) -> None:
    assert {doc["kind"] for _, doc in K8S_DOCUMENTS} >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "CronJob",
    }
    consumer = k8s_kinds()[("Deployment", "onlinematch-consumer")]
    kubernetes_validate.validate(consumer, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(with_value(consumer, path, value), KUBERNETES_VERSION, strict=True)


def compose_validator() -> jsonschema.protocols.Validator:
    """The compose-spec JSON schema vendored in check-jsonschema (its `check-compose-spec` hook)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    assert schema["title"] == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_errors(compose: dict[str, Any]) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.path))}: {e.message}" for e in compose_validator().iter_errors(compose))


def test_compose_file_matches_the_compose_spec() -> None:
    (compose,) = documents(ROOT / "docker-compose.yml")
    assert compose_errors(compose) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "consumer", "deploy", "replica"), 2),  # misspelled field
        (("services", "redis", "command"), 7),  # wrong type
        (("services", "api", "depends_on"), "redis"),  # a list or a mapping, not a string
        (("services", "kafka", "helthcheck"), {}),  # misspelled service field
    ],
)
def test_the_compose_spec_refuses_a_broken_compose_file(path: tuple[str | int, ...], value: object) -> None:
    (compose,) = documents(ROOT / "docker-compose.yml")
    assert compose_errors(with_value(compose, path, value))


def feedback_partitions(env: dict[str, Any]) -> int:
    """FEEDBACK_PARTITIONS as a process with this environment sees it (the setting's default when unset)."""
    return Settings(**{k.lower(): v for k, v in env.items() if k == "FEEDBACK_PARTITIONS"}).feedback_partitions


def scale_beyond(docs: list[dict[str, Any]], deployment: str, partitions: int) -> list[str]:
    """Where a Deployment could run more pods than there are partitions: its replicas, or the
    maximum of an autoscaler that targets it."""
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
    found = []
    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "Deployment" and doc["metadata"]["name"] == deployment:
            most = spec.get("replicas", 1)
        elif kind == "HorizontalPodAutoscaler" and spec["scaleTargetRef"] == target:
            most = spec["maxReplicas"]
        else:
            continue
        if most > partitions:
            found.append(f"{kind} {doc['metadata']['name']}: {most}")
    return found


def test_consumers_never_outnumber_the_feedback_partitions() -> None:
    """A consumer beyond the partition count owns no partition and sits idle."""
    docs = [doc for _, doc in K8S_DOCUMENTS]
    (configmap,) = documents(ROOT / "k8s" / "configmap.yaml")
    partitions = feedback_partitions(configmap["data"])
    assert ("Deployment", "onlinematch-consumer") in k8s_kinds()
    assert scale_beyond(docs, "onlinematch-consumer", partitions) == []
    # The check can fail: an autoscaler allowed one consumer more than there are partitions.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "onlinematch-consumer"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "onlinematch-consumer"},
            "minReplicas": 1,
            "maxReplicas": partitions + 1,
        },
    }
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    assert scale_beyond([*docs, hpa], "onlinematch-consumer", partitions) == [
        f"HorizontalPodAutoscaler onlinematch-consumer: {partitions + 1}"
    ]
    # The same on one host: compose's consumers share the topic it creates.
    (compose,) = documents(ROOT / "docker-compose.yml")
    consumer = compose["services"]["consumer"]
    assert consumer["deploy"]["replicas"] <= feedback_partitions(consumer["environment"])


def test_api_keeps_serving_through_voluntary_disruptions() -> None:
    kinds = k8s_kinds()
    deployment = kinds[("Deployment", "onlinematch-api")]
    hpa = kinds[("HorizontalPodAutoscaler", "onlinematch-api")]["spec"]
    pdb = kinds[("PodDisruptionBudget", "onlinematch-api")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "onlinematch-api"}
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count; an apply would reset it
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    # At the autoscaler's minimum a drain can still evict a pod, and leaves at least one serving.
    minimum = hpa["minReplicas"]
    evictable = pdb["maxUnavailable"] if "maxUnavailable" in pdb else minimum - pdb["minAvailable"]
    assert isinstance(evictable, int) and 1 <= evictable < minimum, (minimum, pdb)


# Series names a family of each type exposes (prometheus_client's text format, with _created).
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}


def exported_metrics() -> set[str]:
    """Every series name /metrics can show: the app serves Metrics().registry. A labelled
    family has no samples until a label is used, so the names come from the family types."""
    from app.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SERIES_SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bom_[A-Za-z0-9_:]*", expr))


def exprs(node: object) -> Iterator[str]:
    """Every PromQL expression in a dashboard: panel targets, nested rows, template variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for value in node:
            yield from exprs(value)


def test_grafana_dashboard_queries_only_metrics_the_service_exports() -> None:
    dashboard = json.loads((ROOT / "k8s" / "grafana-dashboard.json").read_text())
    assert len(dashboard["panels"]) >= 8
    queries = list(exprs(dashboard))
    assert queries and all(metrics_in(q) for q in queries), [q for q in queries if not metrics_in(q)]
    exported = exported_metrics()
    assert {"om_http_requests_total", "om_http_request_seconds_bucket", "om_bundle_info"} <= exported
    missing = {name for q in queries for name in metrics_in(q)} - exported
    assert not missing, missing
    # The check can fail: a misspelled name, and a real family with the wrong series suffix.
    assert metrics_in("sum(rate(om_http_request_total[1m]))") - exported == {"om_http_request_total"}
    assert "om_http_request_seconds_total" not in exported


def test_alert_rules_fire_on_growing_lag_and_on_no_consumer_and_use_exported_metrics() -> None:
    (rules_file,) = documents(ROOT / "k8s" / "prometheus" / "onlinematch-alerts.yml")
    rules = [rule for group in rules_file["groups"] for rule in group["rules"]]
    assert all({"alert", "expr", "for", "labels", "annotations"} <= set(rule) for rule in rules)
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    # Growing lag is read from the broker's offsets, and the absence of every consumer is its own alert.
    assert "om_consumer_group_lag_records" in by_name["OnlinematchFeedbackLagGrowing"]
    assert "deriv(" in by_name["OnlinematchFeedbackLagGrowing"]
    assert 'absent(up{job="onlinematch-consumer"}' in by_name["OnlinematchNoConsumerAlive"]
    missing = {name for expr in by_name.values() for name in metrics_in(expr)} - exported_metrics()
    assert not missing, missing


def test_consumers_expose_their_metrics_port_in_every_deploy_file() -> None:
    consumer = k8s_kinds()[("Deployment", "onlinematch-consumer")]
    (container,) = consumer["spec"]["template"]["spec"]["containers"]
    assert {"containerPort": 9100, "name": "metrics"} in container["ports"]
    assert consumer["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    (compose,) = documents(ROOT / "docker-compose.yml")
    assert "9100" in compose["services"]["consumer"]["expose"]
    assert Settings().metrics_port == 9100  # the port the files name is the default one
