"""The contract a backend relies on: a client generated from the LIVE spec, on real services.

The service runs under uvicorn on a loopback port, wired to the session's real Redis and real
Kafka-protocol broker (``tests/conftest.py``). Its ``/openapi.json`` is fetched over HTTP and
fed to openapi-python-client (pinned in ``requirements/dev.txt``, invoked as ``bench/client.py``
does), under a package name unique to this run so that it can never be confused with the
checked-in ``onlinematch_client``. Every call goes through that generated package, with
``raise_on_unexpected_status=True``: a status the spec does not document raises
``UnexpectedStatus`` and fails the test, and each documented error must parse into the
generated ``Problem`` model.

The broker-down case runs a second instance of the service whose Kafka bootstrap is a closed
port, so the session's broker keeps serving every other test.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.client import run_generator
from bench.services import Broker, free_port
from tests.app.conftest import TOKEN, real_settings, serving

TIMEOUT = httpx.Timeout(30.0)


@dataclass(frozen=True)
class Generated:
    """The package openapi-python-client wrote from the live spec, imported under its own name."""

    name: str

    def module(self, dotted: str) -> Any:
        return importlib.import_module(f"{self.name}.{dotted}")

    @property
    def models(self) -> Any:
        return self.module("models")

    @property
    def problem(self) -> Any:
        return self.models.Problem

    def client(self, base_url: str, token: str | None = None) -> Any:
        """A generated client that raises on any status the spec does not document."""
        root = importlib.import_module(self.name)
        if token is None:
            return root.Client(base_url=base_url, raise_on_unexpected_status=True, timeout=TIMEOUT)
        return root.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True, timeout=TIMEOUT
        )


def generate_from(spec_path: Path, dest: Path, package: str) -> None:
    """openapi-python-client as ``make client`` runs it, under this run's package name."""
    config = dest / "config.yaml"
    config.write_text(
        f"project_name_override: {package.replace('_', '-')}\npackage_name_override: {package}\npost_hooks: []\n"
    )
    run_generator(spec_path, dest / package, config)


@pytest.fixture(scope="module")
def live(bundle_dir: Path, redis_url: str, broker: Broker) -> Iterator[str]:
    """The service on the real Redis and the real broker."""
    with serving(real_settings(bundle_dir, redis_url, broker.bootstrap)) as base:
        yield base


@pytest.fixture(scope="module")
def broker_down(bundle_dir: Path, redis_url: str) -> Iterator[str]:
    """A second instance on the real Redis whose broker is a closed port."""
    with serving(real_settings(bundle_dir, redis_url, f"127.0.0.1:{free_port()}")) as base:
        yield base


@pytest.fixture(scope="module")
def gen(live: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """A client generated from the spec the running service serves, imported from a temp dir."""
    dest = tmp_path_factory.mktemp("live-client")
    spec = httpx.get(f"{live}/openapi.json", timeout=TIMEOUT)
    assert spec.status_code == 200, spec.text
    spec_path = dest / "openapi.json"
    spec_path.write_bytes(spec.content)
    package = f"onlinematch_live_{uuid.uuid4().hex[:12]}"
    generate_from(spec_path, dest, package)
    sys.path.insert(0, str(dest))
    try:
        importlib.invalidate_caches()
        yield Generated(package)
    finally:
        sys.path.remove(str(dest))
        for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[name]


def assert_problem(gen: Generated, response: Any, status: int, field: str | None = None) -> Any:
    """The response is a documented error whose body parsed into the generated Problem model."""
    assert response.status_code == status, response.content
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.parsed
    assert isinstance(problem, gen.problem), f"{status} did not parse into Problem: {problem!r}"
    assert problem.status == status and problem.title and problem.detail
    if field is not None:
        assert field in [e.field for e in problem.errors], problem.errors
    return problem


def recommend(gen: Generated, base: str, **fields: Any) -> Any:
    body = gen.models.RecommendRequest(**fields)
    return gen.module("api.recommendations.recommend").sync_detailed(client=gen.client(base), body=body)


def test_recommend_then_feedback_with_the_generated_client(gen: Generated, live: str) -> None:
    m = gen.models
    r = recommend(gen, live, user_id="contract-user", k=4, surface="home")
    assert r.status_code == 200, r.content
    slate = r.parsed
    assert isinstance(slate, m.RecommendResponse) and len(slate.items) == 4
    assert slate.degraded is False  # the real Redis answers
    impressions = [
        m.FeedbackEventIn(
            event_id=f"{slate.request_id}:{item.item_id}:imp",
            request_id=slate.request_id,
            item_id=item.item_id,
            type_=m.FeedbackEventInType.IMPRESSION,
            position=pos,
        )
        for pos, item in enumerate(slate.items)
    ]
    click = m.FeedbackEventIn(
        event_id=f"{slate.request_id}:click",
        request_id=slate.request_id,
        item_id=slate.items[0].item_id,
        type_=m.FeedbackEventInType.CLICK,
    )
    send = gen.module("api.recommendations.send_feedback")
    fb = send.sync_detailed(client=gen.client(live), body=m.FeedbackRequest(events=[*impressions, click]))
    assert fb.status_code == 202, fb.content
    assert isinstance(fb.parsed, m.FeedbackResponse)
    assert fb.parsed.accepted == 5 and fb.parsed.duplicates == 0 and fb.parsed.rejected == []


def test_a_bad_field_is_a_422_problem_naming_it(gen: Generated, live: str) -> None:
    assert_problem(gen, recommend(gen, live, user_id="u", k=0), 422, field="k")
    assert_problem(gen, recommend(gen, live, user_id="u", surface="bad surface"), 422, field="surface")


def test_admin_get_and_put_with_the_right_token(gen: Generated, live: str) -> None:
    m = gen.models
    admin = gen.client(live, token=TOKEN)
    got = gen.module("api.admin.get_surface").sync_detailed("contract", client=admin)
    assert got.status_code == 200 and isinstance(got.parsed, m.SurfaceConfig)
    put = gen.module("api.admin.put_surface").sync_detailed("contract", client=admin, body=m.SurfaceUpdate(alpha=0.25))
    assert put.status_code == 200 and isinstance(put.parsed, m.SurfaceConfig) and put.parsed.alpha == 0.25
    again = gen.module("api.admin.get_surface").sync_detailed("contract", client=admin)
    assert isinstance(again.parsed, m.SurfaceConfig) and again.parsed.alpha == 0.25  # stored in the real Redis


def test_an_invalid_surface_name_is_a_422_problem(gen: Generated, live: str) -> None:
    # A well-formed surface nobody has configured yet is not an error: by design it answers
    # 200 with the default settings, so the "unknown surface" error is one whose name is invalid.
    admin = gen.client(live, token=TOKEN)
    fresh = gen.module("api.admin.get_surface").sync_detailed(f"new-{uuid.uuid4().hex[:8]}", client=admin)
    assert fresh.status_code == 200 and isinstance(fresh.parsed, gen.models.SurfaceConfig)
    bad = gen.module("api.admin.get_surface").sync_detailed("bad surface", client=admin)
    assert_problem(gen, bad, 422, field="surface")
    put = gen.module("api.admin.put_surface").sync_detailed(
        "bad surface", client=admin, body=gen.models.SurfaceUpdate(alpha=0.2)
    )
    assert_problem(gen, put, 422, field="surface")


@pytest.mark.parametrize("token", ["wrong-token", None], ids=["wrong-token", "no-token"])
def test_admin_without_a_valid_token_is_a_401_problem(gen: Generated, live: str, token: str | None) -> None:
    api = gen.client(live, token=token)
    got = gen.module("api.admin.get_surface").sync_detailed("contract-401", client=api)
    assert_problem(gen, got, 401)
    put = gen.module("api.admin.put_surface").sync_detailed(
        "contract-401", client=api, body=gen.models.SurfaceUpdate(alpha=0.3)
    )
    assert_problem(gen, put, 401)
    # Nothing was written by the refused put.
    check = gen.module("api.admin.get_surface").sync_detailed("contract-401", client=gen.client(live, token=TOKEN))
    assert check.status_code == 200 and check.parsed.alpha != 0.3


def test_feedback_with_the_broker_down_is_a_503_problem(gen: Generated, broker_down: str) -> None:
    m = gen.models
    r = recommend(gen, broker_down, user_id="u-down", k=2)
    assert r.status_code == 200 and isinstance(r.parsed, m.RecommendResponse)  # serving does not need the broker
    event = m.FeedbackEventIn(
        event_id=f"{r.parsed.request_id}:click",
        request_id=r.parsed.request_id,
        item_id=r.parsed.items[0].item_id,
        type_=m.FeedbackEventInType.CLICK,
    )
    send = gen.module("api.recommendations.send_feedback")
    fb = send.sync_detailed(client=gen.client(broker_down), body=m.FeedbackRequest(events=[event]))
    assert_problem(gen, fb, 503)
    assert int(fb.headers["retry-after"]) > 0
