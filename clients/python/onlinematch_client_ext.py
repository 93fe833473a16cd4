"""The hand-written layer over the generated ``onlinematch_client``: retries and typed errors.

``make client`` replaces ``onlinematch_client/`` and never touches this module. What it adds:

- **Bounded retries on 429 and 503**, waiting what ``Retry-After`` says (seconds or an HTTP
  date) or, without it, an exponential backoff. Both bounds are configurable: at most
  ``RetryPolicy.max_attempts`` requests per call and at most ``RetryPolicy.max_total_wait_s``
  seconds asleep; a ``Retry-After`` that would overrun the budget stops at once.
- **Safe feedback retries.** ``event_id`` makes a re-sent event harmless: repeats in one batch
  are dropped (counted in ``duplicates``), and the consumer credits each request's impression
  and click of an item once, so a batch sent twice is accepted twice but learnt once. So
  ``send_feedback`` also retries after a timeout or a dropped connection, when the first attempt
  may or may not have landed. Keep each event's id stable across retries (e.g. derived from
  your own impression/click row), never a fresh uuid per attempt.
  ``recommend`` and the admin calls retry only on 429/503, where the service accepted nothing.
- **One typed error.** Any other non-success raises ``OnlinematchError`` carrying the parsed
  ``Problem`` (RFC 9457: ``title``, ``detail``, ``errors`` naming each invalid field).
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

import httpx
from onlinematch_client import AuthenticatedClient, Client
from onlinematch_client.api.admin import get_stats, get_surface, put_surface
from onlinematch_client.api.recommendations import recommend, send_feedback
from onlinematch_client.models import (
    FeedbackEventIn,
    FeedbackEventInType,
    FeedbackRequest,
    FeedbackResponse,
    GetStatsResponseGetStats,
    Problem,
    RecommendRequest,
    RecommendResponse,
    SurfaceConfig,
    SurfaceUpdate,
)
from onlinematch_client.types import Response

__all__ = [
    "FeedbackEventIn",
    "FeedbackEventInType",
    "OnlinematchClient",
    "OnlinematchError",
    "Problem",
    "RecommendRequest",
    "RetryPolicy",
    "SurfaceUpdate",
    "retry_after_s",
]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 503})


class OnlinematchError(Exception):
    """The service answered with an error (or an undocumented status, then ``problem`` is None).

    ``status`` is the HTTP status; ``problem`` the parsed ``application/problem+json`` body,
    whose ``errors`` list names each invalid field on a 422; ``attempts`` how many requests
    were made; ``retry_after_s`` the last ``Retry-After`` seen, if any.
    """

    def __init__(
        self, status: int, problem: Problem | None, body: bytes, attempts: int, retry_after_s: float | None
    ) -> None:
        self.status = status
        self.problem = problem
        self.body = body
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        what = f"{problem.title}: {problem.detail}" if problem is not None else body[:200].decode(errors="replace")
        super().__init__(f"HTTP {status} after {attempts} attempt(s): {what}")

    @property
    def retryable(self) -> bool:
        """The service asked to be retried later (429/503): the bound ran out, not the request."""
        return self.status in RETRY_STATUSES


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long a call keeps trying. ``max_attempts=1`` turns retries off."""

    max_attempts: int = 4
    max_total_wait_s: float = 30.0
    # Without Retry-After: backoff_s, 2*backoff_s, 4*backoff_s, ... each capped at max_wait_s.
    backoff_s: float = 0.5
    max_wait_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_total_wait_s < 0 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError(f"invalid retry policy {self}")


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None if absent or unreadable.

    >>> retry_after_s("5"), retry_after_s(None), retry_after_s("soon")
    (5.0, None, None)
    >>> retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", datetime(2015, 10, 21, 7, 28, tzinfo=UTC))
    10.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class OnlinematchClient:
    """The calls a backend makes, with retries and typed errors.

    ``token`` is the operator token (only the admin calls need it). ``transport`` is passed to
    httpx (a test's in-process transport, a proxy's, ...). ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 2.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        httpx_args: dict[str, object] = {} if transport is None else {"transport": transport}
        timeout = httpx.Timeout(timeout_s)
        self.api = Client(base_url=base_url, timeout=timeout, httpx_args=httpx_args)
        self.admin_api = (
            AuthenticatedClient(base_url=base_url, token=token, timeout=timeout, httpx_args=httpx_args)
            if token is not None
            else None
        )
        self.retry = retry or RetryPolicy()
        self.sleep = sleep

    def close(self) -> None:
        self.api.get_httpx_client().close()
        if self.admin_api is not None:
            self.admin_api.get_httpx_client().close()

    def __enter__(self) -> OnlinematchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The calls

    def recommend(self, user_id: str, *, surface: str = "default", k: int = 10, **fields: object) -> RecommendResponse:
        """A ranked slate; ``fields`` are the request's other fields (candidates, exclude, ...)."""
        body = RecommendRequest.from_dict({"user_id": user_id, "surface": surface, "k": k, **fields})
        return self._call(lambda: recommend.sync_detailed(client=self.api, body=body), RecommendResponse)

    def send_feedback(self, events: Iterable[FeedbackEventIn]) -> FeedbackResponse:
        """Impressions, clicks and rewards; retried after transport errors too (``event_id``)."""
        body = FeedbackRequest(events=list(events))
        return self._call(
            lambda: send_feedback.sync_detailed(client=self.api, body=body), FeedbackResponse, idempotent=True
        )

    def get_surface(self, surface: str) -> SurfaceConfig:
        return self._call(lambda: get_surface.sync_detailed(surface, client=self._admin()), SurfaceConfig)

    def put_surface(self, surface: str, update: SurfaceUpdate) -> SurfaceConfig:
        """The audit records the token's name (the service decides who, not the caller)."""
        return self._call(lambda: put_surface.sync_detailed(surface, client=self._admin(), body=update), SurfaceConfig)

    def get_stats(self) -> GetStatsResponseGetStats:
        return self._call(lambda: get_stats.sync_detailed(client=self._admin()), GetStatsResponseGetStats)

    # The machinery

    def _admin(self) -> AuthenticatedClient:
        if self.admin_api is None:
            raise ValueError("the admin calls need the operator token: OnlinematchClient(..., token=...)")
        return self.admin_api

    def _call(self, send: Callable[[], Response[Problem | T]], expected: type[T], *, idempotent: bool = False) -> T:
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            try:
                response = send()
            except httpx.TransportError:
                wait = self._backoff(attempt)
                if not idempotent or last or waited + wait > self.retry.max_total_wait_s:
                    raise
                self.sleep(wait)
                waited += wait
                continue
            parsed = response.parsed
            if isinstance(parsed, expected):
                return parsed
            status = int(response.status_code)
            hinted = retry_after_s(response.headers.get("retry-after"))
            if status in RETRY_STATUSES and not last:
                wait = hinted if hinted is not None else self._backoff(attempt)
                if waited + wait <= self.retry.max_total_wait_s:
                    self.sleep(wait)
                    waited += wait
                    continue
            problem = parsed if isinstance(parsed, Problem) else None
            raise OnlinematchError(status, problem, response.content, attempt, hinted)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry.max_wait_s, self.retry.backoff_s * 2 ** (attempt - 1)))
