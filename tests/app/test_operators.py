"""Named operators: tokens by name and role from a file, rotated without a restart; the audit
records the authenticated name, never a header the caller chose."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog
import structlog.testing
from fastapi.testclient import TestClient

from app.auth import Operators, OperatorsError, digest, parse_operators
from app.main import create_app
from tests.app.conftest import TOKEN, settings_for


def write(path: Path, entries: dict[str, tuple[str, str]]) -> None:
    path.write_bytes(orjson.dumps({name: {"sha256": digest(t), "role": role} for name, (t, role) in entries.items()}))


@pytest.fixture
def named(tmp_path: Path, bundle_dir: Path) -> Iterator[tuple[TestClient, Path]]:
    path = tmp_path / "operators.json"
    write(path, {"alice": ("alice-token", "editor"), "bob": ("bob-token", "viewer")})
    with TestClient(create_app(settings_for(bundle_dir, operators_file=path))) as c:
        yield c, path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_viewers_read_editors_change_and_the_audit_names_who(named: tuple[TestClient, Path]) -> None:
    client, _ = named
    assert client.get("/v1/admin/stats", headers=bearer("bob-token")).status_code == 200
    assert client.get("/v1/admin/surfaces/home", headers=bearer("bob-token")).status_code == 200
    r = client.put("/v1/admin/surfaces/home", json={"alpha": 0.3}, headers=bearer("bob-token"))
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    assert client.put("/v1/items/x-1", json={}, headers=bearer("bob-token")).status_code == 403
    # The X-Operator header no longer decides who is recorded.
    r = client.put(
        "/v1/admin/surfaces/home", json={"alpha": 0.3}, headers={**bearer("alice-token"), "X-Operator": "spoofed-name"}
    )
    assert r.status_code == 200
    changes = client.get("/v1/admin/stats", headers=bearer("bob-token")).json()["changes"]
    assert changes[0]["who"] == "alice"
    assert client.put("/v1/items/x-1", json={}, headers=bearer("alice-token")).json()["record"]["by"] == "alice"
    # The shared token still works, as the editor named "operator".
    assert client.put("/v1/admin/surfaces/home", json={"alpha": 0.2}, headers=bearer(TOKEN)).status_code == 200
    assert client.get("/v1/admin/stats", headers=bearer(TOKEN)).json()["changes"][0]["who"] == "operator"


def test_a_refused_request_changes_nothing_and_is_logged(named: tuple[TestClient, Path]) -> None:
    client, _ = named
    before = client.get("/v1/admin/surfaces/home", headers=bearer("bob-token")).json()
    with structlog.testing.capture_logs() as logs:
        for headers in ({}, bearer("wrong"), bearer("bob-token")):
            status = client.put("/v1/admin/surfaces/home", json={"alpha": 9.0}, headers=headers).status_code
            assert status in (401, 403)
    assert client.get("/v1/admin/surfaces/home", headers=bearer("bob-token")).json() == before
    refused = [e for e in logs if e["event"] == "auth_refused"]
    assert [e["reason"] for e in refused] == ["no bearer token", "unknown token", "viewer"]
    assert not any("wrong" in str(e) or "bob-token" in str(e) for e in refused)  # no token is logged


def test_tokens_rotate_without_a_restart(named: tuple[TestClient, Path]) -> None:
    client, path = named
    assert client.get("/v1/admin/stats", headers=bearer("alice-token")).status_code == 200
    write(path, {"alice": ("alice-new", "editor"), "bob": ("bob-token", "viewer")})
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    time.sleep(1.1)  # the file is looked at once a second
    assert client.get("/v1/admin/stats", headers=bearer("alice-token")).status_code == 401
    assert client.get("/v1/admin/stats", headers=bearer("alice-new")).status_code == 200
    # A half-written file is not loaded: the names that worked keep working.
    path.write_text('{"alice": ')
    os.utime(path, (time.time() + 10, time.time() + 10))
    time.sleep(1.1)
    assert client.get("/v1/admin/stats", headers=bearer("alice-new")).status_code == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"nope", "not JSON"),
        (b"[]", "must be an object"),
        (b'{"a": 1}', "a: must be an object"),
        (b'{"a": {"sha256": "xyz", "role": "editor"}}', "a.sha256"),
        (b'{"a": {"sha256": "' + b"0" * 64 + b'", "role": "admin"}}', "a.role"),
    ],
)
def test_a_bad_operators_file_names_the_entry(tmp_path: Path, bundle_dir: Path, text: bytes, message: str) -> None:
    path = tmp_path / "operators.json"
    with pytest.raises(OperatorsError, match=message):
        parse_operators(path, text)
    path.write_bytes(text)
    with pytest.raises(OperatorsError, match=str(path)):
        Operators(settings_for(bundle_dir, operators_file=path))  # start-up fails where it is seen
