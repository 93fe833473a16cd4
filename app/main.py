"""The FastAPI application: wiring (``Services``), error format, metrics middleware.

Routes live in ``app/routes.py``; each is one call into ``Recommender`` or ``Surfaces``.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import uuid
from collections import Counter as CounterType
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import Operators
from app.catalogue import CatalogueEditor
from app.lease import Report, ServingLease
from app.logs import configure_logging
from app.metrics import Metrics
from app.models import Problem
from app.recommender import BundleHolder, NoBundle, Recommender
from app.settings import Settings
from app.surfaces import Surfaces
from streaming.bus import Bus, BusUnavailable, MemoryBus, Producer
from streaming.catalogue import follow_items
from streaming.consumer import FeedbackConsumer
from streaming.events import merge_decisions
from streaming.opstats import Counters
from streaming.stores import MemoryStore, Store

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
HEARTBEAT_S = 10.0  # how often a replica renews its serving lease (app/lease.py); a third of the lease


@dataclass
class Services:
    """Everything a process holds; built once from ``Settings`` and passed in."""

    settings: Settings
    store: Store
    bus: Bus
    producer: Producer
    metrics: Metrics
    bundles: BundleHolder
    surfaces: Surfaces
    recommender: Recommender
    counters: Counters
    editor: CatalogueEditor  # catalogue changes; the replica's view is recommender.catalogue
    operators: Operators
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    consumer: FeedbackConsumer | None = None

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None) -> Services:
        """``store`` may be injected (tests); by default it comes from ``settings``."""
        metrics = Metrics()
        bus: Bus
        if store is None and settings.redis_url:
            from streaming.redis_store import RedisStore

            store = RedisStore.from_url(
                settings.redis_url,
                settings.redis_timeout_s,
                cluster=settings.redis_cluster,
                wait_replicas=settings.redis_wait_replicas,
            )
        elif store is None:
            store = MemoryStore()
        if settings.kafka_bootstrap_servers:
            from streaming.kafka_bus import KafkaBus

            bus = KafkaBus(settings.kafka_bootstrap_servers, settings.kafka_timeout_s)
        else:
            bus = MemoryBus(default_partitions=settings.feedback_partitions)
        producer = bus.producer()
        # Decision records queued together go out as one (streaming/events.py, merge_decisions).
        producer.batch(settings.decisions_topic, merge_decisions)
        bundles = BundleHolder(settings.bundle_dir, metrics, ServingLease(store))
        surfaces = Surfaces(store, settings.surface_cache_s, settings.lam)
        counters = Counters()
        recommender = Recommender(settings, store, producer, bundles, surfaces, metrics, counters)
        editor = CatalogueEditor(store, producer, recommender.catalogue, settings.items_topic, settings.kafka_timeout_s)
        operators = Operators(settings)
        return cls(settings, store, bus, producer, metrics, bundles, surfaces, recommender, counters, editor, operators)

    def start(self) -> None:
        if isinstance(self.bus, MemoryBus):
            self._ensure_topics()
        else:
            # A broker that is down or slow must not hold up serving recommendations.
            threading.Thread(target=self._ensure_topics, name="ensure-topics", daemon=True).start()
        self.bundles.reload_if_changed()
        self._spawn("bundle-poller", self._poll_bundles)
        self._spawn("counter-flusher", self._flush_counters)
        self._spawn("version-heartbeat", self._heartbeat)
        self._spawn("catalogue-refresh", self.recommender.catalogue.run)
        if isinstance(self.bus, MemoryBus):
            # The embedded bus exists only in this process, so its consumers run here too.
            self.consumer = consumer_for(self)
            self._spawn("embedded-consumer", self.consumer.run)
            self._spawn(
                "items-follower", functools.partial(follow_items, self.bus, self.store, self.settings.items_topic)
            )

    def _ensure_topics(self) -> None:
        try:
            ensure_topics(self.bus, self.settings)
        except Exception as exc:  # any client error: serve anyway; feedback answers 503 until the broker is back
            self.metrics.bus_errors.labels("ensure_topics").inc()
            log.warning("topics_not_ensured", error=type(exc).__name__)

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _poll_bundles(self, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            self.bundles.reload_if_changed()

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the serving lease: tells the consumers which version this replica serves
        (``app/lease.py``). A lost beat is retried within a second, well inside the lease."""
        while True:
            report = self.bundles.report(self.surfaces.arm_namespaces)
            if report is Report.UNAVAILABLE:
                self.metrics.store_errors.labels("heartbeat").inc()
            if stop.wait(HEARTBEAT_S if report is not Report.UNAVAILABLE else min(1.0, HEARTBEAT_S)):
                return

    def _flush_counters(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            self.counters.flush(self.store)
            # Set, not a callback gauge: with several workers the value is kept per process in
            # the metrics directory (app/metrics.py). The embedded producer never drops; the
            # Kafka one counts what its queue could not send.
            self.metrics.decisions_dropped.set(float(getattr(self.producer, "dropped", 0)))
        self.counters.flush(self.store)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.producer.close()


def ensure_topics(bus: Bus, s: Settings) -> None:
    """The service's topics (``streaming/events.py``): the items topic compacted, the others
    kept for ``log_retention_s``, which ``onlinematch rebuild`` depends on."""
    bus.ensure_topics(
        {
            s.feedback_topic: s.feedback_partitions,
            s.decisions_topic: s.feedback_partitions,
            s.dead_letter_topic: 1,
            s.items_topic: s.feedback_partitions,
        },
        compacted=[s.items_topic],
        retention_s=s.log_retention_s,
    )


def watch_group_lag(services: Services, stop: threading.Event, every_s: float = 10.0) -> None:
    """Read the group's lag from the broker every ``every_s`` into ``om_consumer_group_lag_records``
    (``Bus.group_lag``), until ``stop``. Any live member measures it, so it is true while the
    group re-joins; with no member alive the metric goes stale and the alert on absent
    consumers fires (``k8s/prometheus/onlinematch-alerts.yml``)."""
    s, m = services.settings, services.metrics
    while not stop.is_set():
        try:
            lag = services.bus.group_lag(s.consumer_group, s.feedback_topic)
        except Exception as exc:  # any client error: the next read may work; the timestamp says how old
            log.warning("group_lag_not_read", error=type(exc).__name__)
        else:
            for partition, n in lag.items():
                m.group_lag.labels(str(partition)).set(n)
            m.group_lag_measured.set(time.time())
        stop.wait(every_s)


def consumer_for(services: Services) -> FeedbackConsumer:
    s, m = services.settings, services.metrics

    def on_applied(event_ts: list[float]) -> None:
        now = time.time()
        for ts in event_ts:
            if ts > 0:
                m.freshness.observe(max(0.0, now - ts))

    def on_batch(counts: CounterType[str], size: int, apply_s: float) -> None:
        m.consumer_batch.observe(size)
        m.consumer_apply.observe(apply_s)
        m.consumer_batches.inc()
        m.consumer_last_batch.set(time.time())
        for key, n in counts.items():
            if key.startswith("credited_"):
                m.feedback.labels(key.removeprefix("credited_"), "applied").inc(n)
            elif key.startswith("dead_"):
                m.feedback.labels("any", "dead_lettered").inc(n)
            elif key in ("duplicate", "redelivered"):
                m.feedback.labels("any", key).inc(n)

    def on_lag(lag: dict[int, int]) -> None:
        for partition, n in lag.items():
            m.consumer_lag.labels(str(partition)).set(n)

    def on_error(error: str) -> None:
        m.consumer_errors.labels(error).inc()

    return FeedbackConsumer(
        services.bus,
        services.store,
        group=s.consumer_group,
        feedback_topic=s.feedback_topic,
        dead_letter_topic=s.dead_letter_topic,
        attribution_window_s=s.attribution_window_s,
        retire_every_s=s.retire_every_s,
        on_applied=on_applied,
        on_batch=on_batch,
        on_lag=on_lag,
        on_error=on_error,
    )


def problem(status: int, title: str, detail: str, retry_after: int | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...], message: str = "") -> str:
    """The dotted field an error names. A check across fields (a model validator) fails at the
    model's own location; its message then starts with the field it blames
    (``"Value error, control: ..."``), which is appended."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    named = re.match(r"Value error, ([A-Za-z_][\w.]*): ", message)
    if named and not ".".join(parts).endswith(named.group(1)):
        parts.append(named.group(1))
    return ".".join(parts) or "body"


DESCRIPTION = (
    "Real-time recommendations explored by a contextual bandit. Every error is "
    "`application/problem+json` (the `Problem` schema); a 503 carries `Retry-After` when retrying helps."
)
TAGS = [
    {"name": "recommendations", "description": "Ask for a slate, then report what the user saw and did."},
    {"name": "admin", "description": "Operator routes: viewers read, editors also change (bearer token)."},
    {
        "name": "catalogue",
        "description": "The live catalogue: publish, change and take down items between offline runs (editor token).",
    },
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
    {"name": "dashboard", "description": "The operator dashboard (HTML); its data comes from `get_stats`."},
]


def openapi(app: FastAPI, generate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's schema plus the one ``Problem`` component every error response refers to."""
    if app.openapi_schema is None:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem_schema.pop("$defs", {}))
        components["Problem"] = problem_schema
        app.openapi_schema = schema
    return app.openapi_schema


class Observe:
    """Request id, metrics and the access line, as a pure ASGI middleware: Starlette's
    ``@app.middleware("http")`` wraps each request in extra tasks and a streamed body, a cost
    paid on every request (issue 12's profile). Access lines are debug-level: one JSON line per
    request buried the lines that matter (issue 11)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}  # (route, status) → metric children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        claimed = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = claimed.decode("latin-1")[:64] or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The template as the spec writes it ("{item_id}", not "{item_id:path}"): the metric label.
            path = getattr(scope.get("route"), "path_format", "unmatched")
            elapsed = time.perf_counter() - start
            svc: Services | None = getattr(scope["app"].state, "services", None)
            if svc is not None:
                children = self._children.get((path, status))
                if children is None:
                    label = str(status)
                    children = (svc.metrics.requests.labels(path, label), svc.metrics.latency.labels(path, label))
                    self._children[(path, status)] = children
                children[0].inc()
                children[1].observe(elapsed)
            log.debug("http_request", method=scope["method"], route=path, status=status, ms=round(elapsed * 1000, 2))
            structlog.contextvars.clear_contextvars()


def create_app_from_env() -> FastAPI:
    """The app of one ``onlinematch serve --workers N`` worker: each worker process builds its
    own from the environment, which ``app.cli.serve`` filled with the command line's settings."""
    return create_app(Settings())


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app; ``services`` may be injected (tests), else they are built from ``settings``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services.build(settings)
        app.state.services = svc
        svc.start()
        try:
            yield
        finally:
            svc.close()

    configure_logging(settings.log_level)
    app = FastAPI(
        title="onlinematch",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.openapi = functools.partial(openapi, app, app.openapi)  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"]), str(e["msg"])), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, "Request failed", str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Every method of the path (RFC 9110), not only the first route's: GET, PUT and
            # DELETE of one path are three routes.
            # (The service's own router: FastAPI nests included routes out of reach of app.routes.)
            from app.experiment_routes import router as experiment_router
            from app.routes import router

            allowed = {
                m
                for route in [*router.routes, *experiment_router.routes]
                if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
                for m in (route.methods or ())
            }
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.exception_handler(BusUnavailable)
    async def bus_down(request: Request, exc: BusUnavailable) -> JSONResponse:
        detail = "the event broker did not acknowledge; nothing was accepted, retry later"
        return problem(503, "Broker unavailable", detail, retry_after=settings.retry_after_s)

    @app.exception_handler(NoBundle)
    async def no_bundle(request: Request, exc: NoBundle) -> JSONResponse:
        return problem(503, "No model bundle", str(exc), retry_after=settings.retry_after_s)

    app.add_middleware(Observe)

    from app.experiment_routes import router as experiment_router
    from app.routes import router

    app.include_router(router)
    app.include_router(experiment_router)
    return app
