"""The OpenAPI spec is truthful: what a generated client (openapi-python-client) is told is what
the service does. Every status below is triggered for real against the app, then looked up in
``/openapi.json`` for that path and method; a documented status nobody can trigger fails too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.experiment_routes import router as experiment_router
from app.main import PROBLEM, create_app
from app.models import Problem
from app.routes import router
from streaming.bus import BusUnavailable, Message
from streaming.stores import StoreUnavailable
from tests.app.conftest import TOKEN, auth, settings_for

PROBLEM_REF = "#/components/schemas/Problem"
NOT_UTF8 = b'{"user_id": "\xff"}'  # JSON that is not UTF-8: FastAPI answers 400 before validation
JSON = {"content-type": "application/json"}

# (method, path) -> the short operation id a generated client names its function after.
OPERATION_IDS = {
    ("post", "/v1/recommend"): "recommend",
    ("post", "/v1/feedback"): "send_feedback",
    ("get", "/v1/admin/surfaces/{surface}"): "get_surface",
    ("put", "/v1/admin/surfaces/{surface}"): "put_surface",
    ("get", "/v1/admin/stats"): "get_stats",
    ("get", "/dashboard"): "get_dashboard",
    ("get", "/dashboard/{asset}"): "get_dashboard_asset",
    ("get", "/healthz"): "get_health",
    ("get", "/readyz"): "get_readiness",
    ("get", "/metrics"): "get_metrics",
    ("put", "/v1/items/{item_id}"): "put_item",
    ("delete", "/v1/items/{item_id}"): "delete_item",
    ("get", "/v1/items/{item_id}"): "get_item",
    ("get", "/v1/admin/surfaces/{surface}/experiment"): "get_experiment",
    ("put", "/v1/admin/surfaces/{surface}/experiment"): "start_experiment",
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote"): "promote_experiment_arm",
    ("post", "/v1/admin/surfaces/{surface}/experiment/end"): "end_experiment",
}
ADMIN = {
    "get_surface",
    "put_surface",
    "get_stats",
    "put_item",
    "delete_item",
    "get_item",
    "get_experiment",
    "start_experiment",
    "promote_experiment_arm",
    "end_experiment",
}


@pytest.fixture
def unready(tmp_path: Path) -> Iterator[TestClient]:
    """The service before any model bundle exists (an empty bundle directory)."""
    with TestClient(create_app(settings_for(tmp_path))) as c:
        yield c


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _broker_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    rec = client.post("/v1/recommend", json={"user_id": "u", "k": 1}).json()
    ev = {"event_id": "e", "request_id": rec["request_id"], "item_id": rec["items"][0]["item_id"], "type": "click"}

    def refuse(messages: list[Message], timeout_s: float) -> None:
        raise BusUnavailable("down")

    monkeypatch.setattr(client.app.state.services.producer, "send_and_wait", refuse)  # type: ignore[attr-defined]
    r: httpx.Response = client.post("/v1/feedback", json={"events": [ev]})
    return r


def _over_limit(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    """A user's whole burst spent (the limit's own behaviour: tests/app/test_rate_limits.py)."""
    rec = client.post("/v1/recommend", json={"user_id": "u-limited", "k": 1}).json()
    monkeypatch.setattr(client.app.state.services.settings, "feedback_user_burst", 1.0)  # type: ignore[attr-defined]
    ev = {"request_id": rec["request_id"], "item_id": rec["items"][0]["item_id"], "type": "impression"}
    client.post("/v1/feedback", json={"events": [{"event_id": "first", **ev}]})
    r: httpx.Response = client.post("/v1/feedback", json={"events": [{"event_id": "second", **ev}]})
    return r


def _store_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    def refuse(*args: object) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(client.app.state.services.store, "put_surface", refuse)  # type: ignore[attr-defined]
    r: httpx.Response = client.put("/v1/admin/surfaces/home", json={"alpha": 0.3}, headers=auth())
    return r


def _refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, name: str, value: object
) -> httpx.Response:
    """``method`` on an item with the store's ``name`` replaced: raising ``StoreUnavailable``
    when ``value`` is that class, else returning ``value``."""

    def stub(*args: object) -> object:
        if value is StoreUnavailable:
            raise StoreUnavailable("down")
        return value

    monkeypatch.setattr(client.app.state.services.store, name, stub)  # type: ignore[attr-defined]
    body: dict[str, Any] | None = {"features": {}} if method == "put" else None
    r: httpx.Response = client.request(method, "/v1/items/new-1", headers=auth(), json=body)
    return r


def _as_viewer(client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str) -> httpx.Response:
    """A change by a named operator whose role is viewer (app/auth.py)."""
    from app.auth import Operator

    services = client.app.state.services  # type: ignore[attr-defined]  # starlette app state
    monkeypatch.setattr(services.operators, "authenticate", lambda token: Operator("bob", "viewer"))
    body: dict[str, Any] | None = {} if method == "put" else None
    r: httpx.Response = client.request(method, path, headers=auth(), json=body)
    return r


X = "/v1/admin/surfaces/home/experiment"
EXPERIMENT = {"name": "x", "control": "a", "arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}


def _experiment(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, suffix: str, **kw: Any
) -> httpx.Response:
    """``method`` on the experiment routes once ``home`` runs one, with the store's ``down``
    method (if given) raising ``StoreUnavailable`` after the start."""
    down = kw.pop("down", None)
    client.put(X, json=EXPERIMENT, headers=H).raise_for_status()
    if down is not None:
        return _down(client, monkeypatch, down, method, X + suffix, **kw)
    r: httpx.Response = client.request(method, X + suffix, **kw)
    return r


def _down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, name: str, method: str, path: str, **kw: Any
) -> httpx.Response:
    """``method`` on ``path`` with the store's ``name`` raising ``StoreUnavailable``."""

    def refuse(*args: object) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(client.app.state.services.store, name, refuse)  # type: ignore[attr-defined]
    r: httpx.Response = client.request(method, path, **kw)
    return r


Trigger = Callable[[TestClient, TestClient, pytest.MonkeyPatch], httpx.Response]
H = {"Authorization": f"Bearer {TOKEN}"}

# (method, path, status): how to make the service really answer it. ``c`` is the ready
# service, ``u`` the one with no bundle yet.
TRIGGERS: dict[tuple[str, str, int], Trigger] = {
    ("post", "/v1/recommend", 200): lambda c, u, mp: c.post("/v1/recommend", json={"user_id": "u"}),
    ("post", "/v1/recommend", 400): lambda c, u, mp: c.post("/v1/recommend", content=NOT_UTF8, headers=JSON),
    ("post", "/v1/recommend", 422): lambda c, u, mp: c.post("/v1/recommend", json={"user_id": "u", "k": 0}),
    ("post", "/v1/recommend", 503): lambda c, u, mp: u.post("/v1/recommend", json={"user_id": "u"}),
    ("post", "/v1/feedback", 202): lambda c, u, mp: c.post(
        "/v1/feedback", json={"events": [{"event_id": "e", "request_id": "r", "item_id": "i", "type": "click"}]}
    ),
    ("post", "/v1/feedback", 400): lambda c, u, mp: c.post("/v1/feedback", content=NOT_UTF8, headers=JSON),
    ("post", "/v1/feedback", 422): lambda c, u, mp: c.post("/v1/feedback", json={"events": []}),
    ("post", "/v1/feedback", 429): lambda c, u, mp: _over_limit(c, mp),
    ("post", "/v1/feedback", 503): lambda c, u, mp: _broker_down(c, mp),
    ("get", "/v1/admin/surfaces/{surface}", 200): lambda c, u, mp: c.get("/v1/admin/surfaces/home", headers=H),
    ("get", "/v1/admin/surfaces/{surface}", 401): lambda c, u, mp: c.get("/v1/admin/surfaces/home"),
    ("get", "/v1/admin/surfaces/{surface}", 422): lambda c, u, mp: c.get("/v1/admin/surfaces/a%20b", headers=H),
    ("put", "/v1/admin/surfaces/{surface}", 200): lambda c, u, mp: c.put(
        "/v1/admin/surfaces/home", json={"alpha": 0.2}, headers=H
    ),
    ("put", "/v1/admin/surfaces/{surface}", 400): lambda c, u, mp: c.put(
        "/v1/admin/surfaces/home", content=NOT_UTF8, headers={**H, **JSON}
    ),
    ("put", "/v1/admin/surfaces/{surface}", 401): lambda c, u, mp: c.put(
        "/v1/admin/surfaces/home", json={"alpha": 0.2}, headers={"Authorization": "Bearer wrong"}
    ),
    ("put", "/v1/admin/surfaces/{surface}", 422): lambda c, u, mp: c.put(
        "/v1/admin/surfaces/home", json={"policy": "linucb"}, headers=H
    ),
    ("put", "/v1/admin/surfaces/{surface}", 503): lambda c, u, mp: _store_down(c, mp),
    ("put", "/v1/admin/surfaces/{surface}", 403): lambda c, u, mp: _as_viewer(c, mp, "put", "/v1/admin/surfaces/home"),
    ("put", "/v1/items/{item_id}", 403): lambda c, u, mp: _as_viewer(c, mp, "put", "/v1/items/new-1"),
    ("delete", "/v1/items/{item_id}", 403): lambda c, u, mp: _as_viewer(c, mp, "delete", "/v1/items/new-1"),
    ("get", "/v1/admin/stats", 200): lambda c, u, mp: c.get("/v1/admin/stats", headers=H),
    ("get", "/v1/admin/stats", 401): lambda c, u, mp: c.get("/v1/admin/stats"),
    ("get", "/dashboard", 200): lambda c, u, mp: c.get("/dashboard"),
    ("get", "/dashboard/{asset}", 200): lambda c, u, mp: c.get("/dashboard/dashboard.js"),
    ("get", "/dashboard/{asset}", 404): lambda c, u, mp: c.get("/dashboard/nothing.css"),
    ("get", "/dashboard/{asset}", 422): lambda c, u, mp: c.get("/dashboard/Nope.exe"),
    ("get", "/healthz", 200): lambda c, u, mp: c.get("/healthz"),
    ("get", "/readyz", 200): lambda c, u, mp: c.get("/readyz"),
    ("get", "/readyz", 503): lambda c, u, mp: u.get("/readyz"),
    ("get", "/metrics", 200): lambda c, u, mp: c.get("/metrics"),
    ("put", "/v1/items/{item_id}", 200): lambda c, u, mp: c.put("/v1/items/new-1", json={"features": {}}, headers=H),
    ("put", "/v1/items/{item_id}", 400): lambda c, u, mp: c.put(
        "/v1/items/new-1", content=NOT_UTF8, headers={**H, **JSON}
    ),
    ("put", "/v1/items/{item_id}", 401): lambda c, u, mp: c.put("/v1/items/new-1", json={"features": {}}),
    ("put", "/v1/items/{item_id}", 409): lambda c, u, mp: _refused(c, mp, "put", "put_item", None),
    ("put", "/v1/items/{item_id}", 422): lambda c, u, mp: c.put("/v1/items/a%7Bb%7D", json={}, headers=H),
    ("put", "/v1/items/{item_id}", 503): lambda c, u, mp: _refused(c, mp, "put", "get_item", StoreUnavailable),
    ("delete", "/v1/items/{item_id}", 200): lambda c, u, mp: c.delete("/v1/items/new-1", headers=H),
    ("delete", "/v1/items/{item_id}", 401): lambda c, u, mp: c.delete("/v1/items/new-1"),
    ("delete", "/v1/items/{item_id}", 409): lambda c, u, mp: _refused(c, mp, "delete", "put_item", None),
    ("delete", "/v1/items/{item_id}", 422): lambda c, u, mp: c.delete("/v1/items/%7E%6F%6D%3Ax", headers=H),
    ("delete", "/v1/items/{item_id}", 503): lambda c, u, mp: _refused(c, mp, "delete", "get_item", StoreUnavailable),
    ("get", "/v1/items/{item_id}", 200): lambda c, u, mp: c.get("/v1/items/item-1", headers=H),
    ("get", "/v1/items/{item_id}", 404): lambda c, u, mp: c.get("/v1/items/new-1", headers=H),
    ("get", "/v1/items/{item_id}", 401): lambda c, u, mp: c.get("/v1/items/new-1"),
    ("get", "/v1/items/{item_id}", 422): lambda c, u, mp: c.get("/v1/items/a%7Bb%7D", headers=H),
    ("get", "/v1/items/{item_id}", 503): lambda c, u, mp: _refused(c, mp, "get", "get_item", StoreUnavailable),
    ("get", "/v1/admin/surfaces/{surface}/experiment", 200): lambda c, u, mp: c.get(X, headers=H),
    ("get", "/v1/admin/surfaces/{surface}/experiment", 401): lambda c, u, mp: c.get(X),
    ("get", "/v1/admin/surfaces/{surface}/experiment", 422): lambda c, u, mp: c.get(
        "/v1/admin/surfaces/a%20b/experiment", headers=H
    ),
    ("get", "/v1/admin/surfaces/{surface}/experiment", 503): lambda c, u, mp: _experiment(
        c, mp, "GET", "", headers=H, down="read_stats"
    ),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 201): lambda c, u, mp: c.put(X, json=EXPERIMENT, headers=H),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 400): lambda c, u, mp: c.put(
        X, content=NOT_UTF8, headers={**H, **JSON}
    ),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 401): lambda c, u, mp: c.put(X, json=EXPERIMENT),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 403): lambda c, u, mp: _as_viewer(c, mp, "put", X),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 409): lambda c, u, mp: _experiment(
        c, mp, "PUT", "", json=EXPERIMENT, headers=H
    ),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 422): lambda c, u, mp: c.put(
        X, json={**EXPERIMENT, "control": "c"}, headers=H
    ),
    ("put", "/v1/admin/surfaces/{surface}/experiment", 503): lambda c, u, mp: _down(
        c, mp, "put_surface", "PUT", X, json=EXPERIMENT, headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 200): lambda c, u, mp: _experiment(
        c, mp, "POST", "/promote", json={"arm": "b"}, headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 400): lambda c, u, mp: c.post(
        X + "/promote", content=NOT_UTF8, headers={**H, **JSON}
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 401): lambda c, u, mp: c.post(
        X + "/promote", json={"arm": "b"}
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 403): lambda c, u, mp: _as_viewer(
        c, mp, "post", X + "/promote"
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 404): lambda c, u, mp: c.post(
        X + "/promote", json={"arm": "b"}, headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 422): lambda c, u, mp: _experiment(
        c, mp, "POST", "/promote", json={"arm": "z"}, headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/promote", 503): lambda c, u, mp: _experiment(
        c, mp, "POST", "/promote", json={"arm": "b"}, headers=H, down="put_surface"
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 200): lambda c, u, mp: _experiment(
        c, mp, "POST", "/end", headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 401): lambda c, u, mp: c.post(X + "/end"),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 403): lambda c, u, mp: _as_viewer(
        c, mp, "post", X + "/end"
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 404): lambda c, u, mp: c.post(X + "/end", headers=H),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 422): lambda c, u, mp: c.post(
        "/v1/admin/surfaces/a%20b/experiment/end", headers=H
    ),
    ("post", "/v1/admin/surfaces/{surface}/experiment/end", 503): lambda c, u, mp: _experiment(
        c, mp, "POST", "/end", headers=H, down="put_surface"
    ),
}


def _operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = spec["paths"][path][method]
    return op


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return resolved


def test_every_route_is_covered_by_the_triggers(spec: dict[str, Any]) -> None:
    """A new route or method fails here until its statuses are triggered and documented."""
    served = {
        (method.lower(), route.path_format)  # "{item_id:path}" is "{item_id}" in the spec
        for route in [*router.routes, *experiment_router.routes]  # what create_app includes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented == set(OPERATION_IDS)
    assert {(m, p) for m, p, _ in TRIGGERS} == served


@pytest.mark.parametrize(("method", "path", "status"), list(TRIGGERS))
def test_each_status_the_code_returns_is_documented(
    client: TestClient,
    unready: TestClient,
    spec: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    status: int,
) -> None:
    r = TRIGGERS[(method, path, status)](client, unready, monkeypatch)
    assert r.status_code == status, r.text
    documented = _operation(spec, method, path)["responses"]
    assert str(status) in documented, f"{method.upper()} {path} returns {status}, the spec does not say so"
    response = documented[str(status)]
    if status >= 400 and path != "/readyz":
        # The body really is the shared problem component, and says so.
        assert r.headers["content-type"] == PROBLEM
        Problem.model_validate(r.json())
        assert response["content"] == {PROBLEM: {"schema": {"$ref": PROBLEM_REF}}}
        # Retry-After is documented exactly where it is sent.
        assert ("Retry-After" in r.headers) == ("Retry-After" in response.get("headers", {}))
    else:
        media = r.headers["content-type"].split(";")[0]
        assert media in response["content"], (media, response["content"])


def test_readiness_503_is_documented_with_its_real_body(unready: TestClient, spec: dict[str, Any]) -> None:
    """``/readyz`` answers 503 with its readiness document, not a problem (probes read it)."""
    r = unready.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    doc = _operation(spec, "get", "/readyz")["responses"]["503"]["content"]["application/json"]["schema"]
    schema = _resolve(spec, doc)
    assert set(r.json()) == set(schema["properties"]) == set(schema["required"])


def test_no_documented_status_is_invented(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            triggered = {str(s) for m, p, s in TRIGGERS if (m, p) == (method, path)}
            assert set(op["responses"]) == triggered, (method, path)


def test_the_problem_schema_is_one_shared_component(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert _resolve(spec, problem["properties"]["errors"]["items"])["required"] == ["field", "message"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    assert response["content"] == {PROBLEM: {"schema": {"$ref": PROBLEM_REF}}}, (method, path)


def test_a_422_body_matches_the_problem_schema(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u", "k": 0})
    problem = Problem.model_validate(r.json())
    assert problem.status == 422 and [e.field for e in problem.errors] == ["k"]


def test_operation_ids_are_short_unique_and_every_operation_is_tagged(spec: dict[str, Any]) -> None:
    ids = []
    declared_tags = {t["name"] for t in spec["tags"]}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] == OPERATION_IDS[(method, path)]
            assert op["tags"] and set(op["tags"]) <= declared_tags, (method, path)
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def test_admin_routes_require_the_bearer_scheme(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert len(schemes) == 1
    (name, scheme), *_ = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if op["operationId"] in ADMIN:
                assert op["security"] == [{name: []}], (method, path)
                assert "401" in op["responses"]
                # The token is the scheme's, not a free-form header parameter.
                assert "authorization" not in {p["name"].lower() for p in op.get("parameters", [])}
            else:
                assert "security" not in op, (method, path)


def test_the_scheme_changes_nothing_about_how_the_token_is_checked(client: TestClient) -> None:
    url = "/v1/admin/surfaces/home"
    assert client.get(url, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    for bad in ("", "Bearer", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Token {TOKEN}"):
        r = client.get(url, headers={"Authorization": bad} if bad else {})
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, bad


def test_every_request_body_has_an_example_the_service_accepts(client: TestClient, spec: dict[str, Any]) -> None:
    bodies = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if "requestBody" not in op:
                continue
            bodies += 1
            schema = _resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
            examples = schema.get("examples")
            assert examples, f"{method.upper()} {path}: the request body has no example"
            for example in examples:
                r = client.request(method, path.format(surface="home", item_id="new-1"), json=example, headers=auth())
                assert r.status_code in (200, 201, 202), (path, example, r.text)
    assert bodies == 6
