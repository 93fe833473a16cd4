"""Who is calling: named operators, their roles, and the shared tokens.

Round 1 had one shared operator token and took the audit trail's "who" from an ``X-Operator``
header, so a change could be recorded as made by anybody. Now every token belongs to a name,
and the audit records the name the token authenticated.

Operators file (``OPERATORS_FILE``), JSON, re-read when it changes (rotation needs no restart)::

    {"alice": {"sha256": "<hex digest of alice's token>", "role": "editor"},
     "bob":   {"sha256": "<hex digest>", "role": "viewer"}}

Only digests are stored, so the file is not a secret in itself; a presented token is hashed
and compared against every entry with ``hmac.compare_digest`` (constant time, and every entry
is compared, so timing does not tell which name matched). Roles:

- ``viewer``: the dashboard's data, surface settings and catalogue state (``GET``);
- ``editor``: everything a viewer may, and changes (``PUT`` surfaces, ``PUT``/``DELETE`` items).

``OPERATOR_TOKEN`` is the editor named ``operator`` and ``EDITOR_TOKEN`` (optional) the
editor named ``editor``, as before; a file entry with either name takes precedence.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
import structlog

from app.settings import Settings

log = structlog.get_logger(__name__)

Role = Literal["viewer", "editor"]
RANK: dict[str, int] = {"viewer": 0, "editor": 1}
RELOAD_S = 1.0


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


class OperatorsError(ValueError):
    """An operators file that cannot be used; the message names the file and the entry."""


def digest(token: str) -> str:
    """The hex SHA-256 of a token, as the operators file stores it.

    >>> digest("s3cret")[:16]
    '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(token.encode()).hexdigest()


def parse_operators(path: Path, text: bytes) -> dict[str, tuple[str, Role]]:
    """name → (digest, role) from an operators file's contents."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OperatorsError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise OperatorsError(f"{path}: must be an object of name → {{sha256, role}}")
    out: dict[str, tuple[str, Role]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise OperatorsError(f"{path}: {name}: must be an object with sha256 and role")
        sha, role = entry.get("sha256"), entry.get("role")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise OperatorsError(f"{path}: {name}.sha256: must be 64 lower-case hex digits")
        if role not in RANK:
            raise OperatorsError(f"{path}: {name}.role: must be one of {sorted(RANK)}, got {role!r}")
        out[str(name)[:64]] = (sha, role)
    return out


class Operators:
    """Authenticates bearer tokens against the operators file and the shared tokens."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.operators_file
        shared: dict[str, tuple[str, Role]] = {
            "operator": (digest(settings.operator_token.get_secret_value()), "editor")
        }
        if settings.editor_token is not None:
            shared["editor"] = (digest(settings.editor_token.get_secret_value()), "editor")
        self._shared = shared
        self._entries = dict(shared)
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._mtime: float | None = None
        if self._path is not None:
            self._load()  # a bad file fails start-up, where an operator sees it

    def _load(self) -> None:
        assert self._path is not None
        stat = self._path.stat()
        entries = parse_operators(self._path, self._path.read_bytes())
        self._entries = {**self._shared, **entries}
        self._mtime = stat.st_mtime
        log.info("operators_loaded", path=str(self._path), names=sorted(entries))

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if self._path is None or now - self._checked < RELOAD_S:
            return
        with self._lock:
            self._checked = now
            try:
                if self._path.stat().st_mtime != self._mtime:
                    self._load()
            except (OSError, OperatorsError) as exc:
                # Keep the names that worked: a half-written file must not lock everyone out.
                log.error("operators_not_reloaded", path=str(self._path), error=str(exc))

    def authenticate(self, token: str) -> Operator | None:
        self._reload_if_changed()
        presented = digest(token)
        found: Operator | None = None
        for name, (sha, role) in self._entries.items():
            if hmac.compare_digest(presented, sha) and found is None:
                found = Operator(name, role)
        return found
