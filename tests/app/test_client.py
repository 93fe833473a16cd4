"""The checked-in Python client (clients/python) against the real app, in-process.

The generated ``onlinematch_client`` and the hand-written ``onlinematch_client_ext`` talk to the
app through an httpx transport that hands each request to a ``TestClient`` (no server, no
network). The first test fails when the checked-in client is stale against the app's spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from onlinematch_client import AuthenticatedClient, Client
from onlinematch_client.api.admin import get_surface
from onlinematch_client.api.recommendations import recommend
from onlinematch_client.models import Problem, RecommendRequest, RecommendResponse, SurfaceConfig
from onlinematch_client_ext import (
    FeedbackEventIn,
    FeedbackEventInType,
    OnlinematchClient,
    OnlinematchError,
    RetryPolicy,
    SurfaceUpdate,
)

from app.main import create_app
from bench import client as generator
from tests.app.conftest import TOKEN, settings_for

BASE = "http://testserver"


class Via(httpx.BaseTransport):
    """Hands every request to the in-process app (public TestClient API only)."""

    def __init__(self, app: TestClient) -> None:
        self.app = app
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        r = self.app.request(request.method, str(request.url), headers=request.headers, content=request.read())
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)


class Scripted(httpx.BaseTransport):
    """Answers from a list of (status, headers) first, then passes through to ``then``."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]], then: httpx.BaseTransport | None = None) -> None:
        self.answers = answers
        self.then = then
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.answers:
            status, headers = self.answers.pop(0)
            problem = {"type": "about:blank", "title": "No model bundle", "status": status, "detail": "later"}
            return httpx.Response(status, headers={"content-type": "application/problem+json", **headers}, json=problem)
        assert self.then is not None
        return self.then.handle_request(request)


@pytest.fixture
def via(client: TestClient) -> Via:
    return Via(client)


def sleeps() -> tuple[list[float], Callable[[float], None]]:
    slept: list[float] = []
    return slept, slept.append


def test_the_checked_in_client_is_generated_from_the_current_spec(tmp_path: Path) -> None:
    """Regenerates into a temporary directory and compares both trees byte for byte."""
    generator.generate(tmp_path)
    fresh, checked_in = generator.tree(tmp_path), generator.tree(generator.CLIENT_DIR)
    assert fresh, "the generator wrote nothing"
    stale = sorted(name for name in fresh.keys() | checked_in.keys() if fresh.get(name) != checked_in.get(name))
    assert not stale, f"clients/python is stale against the app's spec; run `make client`. Differs: {stale}"


def test_the_checked_in_spec_is_what_the_app_serves(client: TestClient) -> None:
    assert generator.spec() == client.get("/openapi.json").json()


def test_generated_recommend_parses_the_slate(via: Via) -> None:
    api = Client(base_url=BASE, httpx_args={"transport": via})
    r = recommend.sync_detailed(client=api, body=RecommendRequest(user_id="u1", k=3))
    assert r.status_code == 200
    assert isinstance(r.parsed, RecommendResponse) and len(r.parsed.items) == 3


def test_a_422_parses_into_the_problem_naming_the_field(via: Via) -> None:
    api = Client(base_url=BASE, httpx_args={"transport": via}, raise_on_unexpected_status=True)
    r = recommend.sync_detailed(client=api, body=RecommendRequest(user_id="u1", k=0))
    assert r.status_code == 422
    assert isinstance(r.parsed, Problem) and r.parsed.status == 422
    assert [e.field for e in r.parsed.errors or []] == ["k"]
    # The wrapper raises it as a typed error carrying the same problem, without retrying.
    with OnlinematchClient(BASE, transport=via) as om, pytest.raises(OnlinematchError) as caught:
        om.recommend("u1", k=0)
    assert caught.value.status == 422 and caught.value.attempts == 1 and not caught.value.retryable
    assert caught.value.problem is not None and [e.field for e in caught.value.problem.errors or []] == ["k"]


def test_admin_needs_the_bearer_token(via: Via) -> None:
    anonymous = AuthenticatedClient(base_url=BASE, token="wrong", httpx_args={"transport": via})
    r = get_surface.sync_detailed("home", client=anonymous)
    assert r.status_code == 401 and isinstance(r.parsed, Problem)
    with OnlinematchClient(BASE, transport=via) as om, pytest.raises(ValueError, match="operator token"):
        om.get_surface("home")
    with OnlinematchClient(BASE, token=TOKEN, transport=via) as om:
        assert isinstance(om.get_surface("home"), SurfaceConfig)
        assert om.put_surface("home", SurfaceUpdate(alpha=0.25)).alpha == 0.25
        assert om.get_stats() is not None
    assert via.seen[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_no_token_at_all_is_a_401_problem(client: TestClient) -> None:
    r = client.get("/v1/admin/surfaces/home")
    assert r.status_code == 401 and Problem.from_dict(r.json()).status == 401


def test_recommend_then_feedback_through_the_wrapper(via: Via) -> None:
    with OnlinematchClient(BASE, transport=via) as om:
        slate = om.recommend("u2", k=4)
        events = [
            FeedbackEventIn(
                event_id=f"{slate.request_id}:{i.item_id}:imp",
                request_id=slate.request_id,
                item_id=i.item_id,
                type_=FeedbackEventInType.IMPRESSION,
                position=pos,
            )
            for pos, i in enumerate(slate.items)
        ]
        click = FeedbackEventIn(
            event_id=f"{slate.request_id}:click",
            request_id=slate.request_id,
            item_id=slate.items[0].item_id,
            type_=FeedbackEventInType.CLICK,
        )
        first = om.send_feedback([*events, click])
        assert first.accepted == 5 and first.duplicates == 0 and first.rejected == []
        # A repeat inside one batch is dropped by event_id.
        again = om.send_feedback([click, click])
        assert again.accepted == 1 and again.duplicates == 1


@pytest.fixture
def unready(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path))) as c:
        yield c


def test_a_503_with_retry_after_is_retried_until_the_bundle_appears(unready: TestClient, via: Via) -> None:
    """The service without a bundle answers 503 + Retry-After; then the bundle is there."""
    real = unready.post("/v1/recommend", json={"user_id": "u"})
    assert real.status_code == 503 and real.headers["retry-after"] == "5"
    script = Scripted([(503, {"retry-after": real.headers["retry-after"]}), (429, {"retry-after": "1"})], then=via)
    slept, sleep = sleeps()
    with OnlinematchClient(BASE, transport=script, sleep=sleep) as om:
        assert len(om.recommend("u", k=2).items) == 2
    assert slept == [5.0, 1.0] and script.calls == 3


def test_the_real_503_parses_and_the_retries_stop_at_max_attempts(unready: TestClient) -> None:
    slept, sleep = sleeps()
    policy = RetryPolicy(max_attempts=3)
    with (
        OnlinematchClient(BASE, transport=Via(unready), sleep=sleep, retry=policy) as om,
        pytest.raises(OnlinematchError) as caught,
    ):
        om.recommend("u")
    err = caught.value
    assert err.status == 503 and err.attempts == 3 and err.retryable and err.retry_after_s == 5.0
    assert err.problem is not None and err.problem.title == "No model bundle"
    assert slept == [5.0, 5.0]


def test_the_retries_stop_at_the_total_wait_budget() -> None:
    script = Scripted([(503, {"retry-after": "4"})] * 10)
    slept, sleep = sleeps()
    policy = RetryPolicy(max_attempts=10, max_total_wait_s=10.0)
    with (
        OnlinematchClient(BASE, transport=script, sleep=sleep, retry=policy) as om,
        pytest.raises(OnlinematchError) as caught,
    ):
        om.recommend("u")
    assert slept == [4.0, 4.0] and script.calls == 3 and caught.value.attempts == 3


def test_feedback_is_retried_after_a_dropped_connection(via: Via) -> None:
    class Flaky(httpx.BaseTransport):
        def __init__(self) -> None:
            self.failures = 1

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.failures and request.url.path == "/v1/feedback":
                self.failures -= 1
                via.handle_request(request)  # it landed, but the answer is lost
                raise httpx.ReadTimeout("lost", request=request)
            return via.handle_request(request)

    slept, sleep = sleeps()
    flaky = Flaky()
    with OnlinematchClient(BASE, transport=flaky, sleep=sleep) as om:
        slate = om.recommend("u3", k=1)
        ev = FeedbackEventIn(
            event_id="e-1", request_id=slate.request_id, item_id=slate.items[0].item_id, type_=FeedbackEventInType.CLICK
        )
        r = om.send_feedback([ev])
    # Accepted again: the consumer credits the request's click once (event_id, see the wrapper).
    assert r.accepted == 1 and slept == [0.5] and flaky.failures == 0
