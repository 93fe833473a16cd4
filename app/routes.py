"""HTTP routes: thin; each is one service call."""

from __future__ import annotations

import re
import time
from pathlib import Path as FilePath
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.convertors import Convertor, register_url_convertor

from app.auth import Operator
from app.catalogue import ChangeConflict, ItemState, NotApplied
from app.dashboard import build_stats
from app.main import PROBLEM, Services, problem
from app.models import (
    FeedbackRequest,
    FeedbackResponse,
    Health,
    Id,
    ItemPut,
    ItemRecordOut,
    ItemStateOut,
    Readiness,
    RecommendRequest,
    RecommendResponse,
    Rejected,
    SurfaceName,
    SurfaceUpdate,
)
from app.recommender import InvalidFeedback, RateLimited
from app.settings import Settings
from app.surfaces import SurfaceConfig
from streaming.events import EventError, FeedbackEvent
from streaming.stores import StoreUnavailable

log = structlog.get_logger(__name__)


class ItemIdConvertor(Convertor[str]):
    """An item id as one path parameter, whatever characters it holds. Ids may contain "/" and
    control characters (recommend and feedback take them); Starlette's "str" stops at a slash
    and its "path" (``.*``) at a newline, and either answered a 404 the spec does not document
    (Schemathesis's stateful phase found both)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# Registered before the routes below compile their paths; "{item_id:item_id}" is "{item_id}" in
# the spec (path_format).
register_url_convertor("item_id", ItemIdConvertor())
router = APIRouter()

STATIC = FilePath(__file__).parent / "static"
DASHBOARD_HTML = (STATIC / "dashboard.html").read_text()


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, a
# hop per request for a dictionary lookup (found by py-spy under bench-serve).
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


# Declares the scheme in the OpenAPI only: ``_authenticated`` reads and checks the header itself.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operatorToken",
    description=(
        "A named operator's token (`OPERATORS_FILE`, app/auth.py), or the shared `OPERATOR_TOKEN` or "
        "`EDITOR_TOKEN`, sent as `Authorization: Bearer <token>`. Viewers read; editors also change."
    ),
)


def _authenticated(request: Request, svc: Services) -> Operator:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    who = svc.operators.authenticate(token) if scheme.lower() == "bearer" and token else None
    if who is None:
        reason = "no bearer token" if not token else "unknown token"
        log.warning("auth_refused", method=request.method, route=request.url.path, reason=reason)
        raise HTTPException(401, "Authorization: a valid bearer token is required")
    return who


async def viewer(
    request: Request,
    svc: ServicesDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Operator:
    """Any named operator: viewers and editors."""
    return _authenticated(request, svc)


async def editor(
    request: Request,
    svc: ServicesDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Operator:
    """An operator with the editor role: the only one whose requests change anything."""
    who = _authenticated(request, svc)
    if not who.may("editor"):
        log.warning("auth_refused", method=request.method, route=request.url.path, who=who.name, reason="viewer")
        raise HTTPException(403, f"{who.name} is a viewer: changes need the editor role")
    return who


ViewerDep = Annotated[Operator, Depends(viewer)]
EditorDep = Annotated[Operator, Depends(editor)]


def problem_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    """One documented error status: its body is the shared ``Problem`` component (``app.main.openapi``)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
        }
    return response


TEXT: dict[str, Any] = {"schema": {"type": "string"}}
BAD_BODY = problem_response("The body could not be read (not UTF-8 JSON).")
INVALID = problem_response("A field, parameter or header is invalid; `errors` names each one.")
UNAUTHORIZED = problem_response("The bearer token is missing or wrong.")
FORBIDDEN = problem_response("The token is a viewer's: changes need the editor role.")
NO_BUNDLE = problem_response("No model bundle is loaded yet; retry after `Retry-After` seconds.", retry_after=True)
BROKER_DOWN = problem_response(
    "The event broker did not acknowledge; nothing was accepted, retry after `Retry-After` seconds.", retry_after=True
)
RATE_LIMITED = problem_response(
    "Over the feedback rate limit of this client or of a user it reports on; nothing was accepted, "
    "retry after `Retry-After` seconds.",
    retry_after=True,
)
STORE_DOWN = problem_response("The statistics store did not take the change; nothing changed.")
ITEM_CONFLICT = problem_response("Another change of the same item landed first; read it and retry.")
ITEM_GONE = problem_response("The item is unknown, or was taken down (`detail` says when and by whom).")
ITEM_NOT_APPLIED = problem_response(
    "The broker or the statistics store did not take the change; retry after `Retry-After` seconds.", retry_after=True
)


_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{1,45}")


def client_address(request: Request, settings: Settings) -> str:
    """Who sends this request, for the per-client feedback limit: the last address of
    ``client_address_header`` (what the trusted proxy appended; earlier ones are the caller's
    claim), else the connection's peer. Anything that is not an IP address is not used."""
    if settings.client_address_header:
        claimed = request.headers.get(settings.client_address_header, "").split(",")[-1].strip()
        if _ADDRESS.fullmatch(claimed):
            return claimed
    peer = request.client.host if request.client is not None else ""
    return peer if _ADDRESS.fullmatch(peer) else "unknown"


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    operation_id="recommend",
    tags=["recommendations"],
    summary="Rank items for a user on a surface",
    responses={400: BAD_BODY, 422: INVALID, 503: NO_BUNDLE},
)
async def recommend(body: RecommendRequest, svc: ServicesDep) -> Response:
    # On the event loop, not in the thread pool: a request is CPU-bound (the GIL serialises it
    # anyway) and its two Redis calls are sub-millisecond on a healthy store, while the hop and
    # the GIL hand-offs between pool threads cost a quarter of the request's CPU (bench-serve).
    # A store that stops answering is skipped for a while (Recommender's breaker), so it cannot
    # hold the loop for more than one timeout per cool-off.
    rec = svc.recommender.recommend(
        body.user_id,
        body.surface,
        body.k,
        body.candidates,
        body.exclude,
        body.user_features,
    )
    # Written with orjson, not validated again into ``RecommendResponse`` and dumped by
    # pydantic: the fields are built here from typed values, and the schema fuzz run
    # (tests/app/test_fuzz_openapi.py) checks every answer against the declared model.
    payload = {
        "request_id": rec.request_id,
        "model_version": rec.model_version,
        "items": [
            {"item_id": i.item_id, "score": i.score, "explored": i.explored, "prior": i.prior} for i in rec.items
        ],
        "degraded": rec.degraded,
        "degraded_reasons": rec.degraded_reasons,
        "unknown_candidates": rec.unknown_candidates,
    }
    return Response(orjson.dumps(payload), media_type="application/json")


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackResponse,
    operation_id="send_feedback",
    tags=["recommendations"],
    summary="Report impressions, clicks and rewards (idempotent by event_id)",
    responses={400: BAD_BODY, 422: INVALID, 429: RATE_LIMITED, 503: BROKER_DOWN},
)
async def feedback(request: Request, body: FeedbackRequest, svc: ServicesDep) -> FeedbackResponse | JSONResponse:
    events = [
        FeedbackEvent(
            e.event_id,
            e.request_id,
            e.item_id,
            e.type,
            e.value if e.value is not None else (1.0 if e.type == "click" else 0.0),
            e.ts if e.ts is not None else 0.0,
            e.position,
        )
        for e in body.events
    ]
    try:
        result = await run_in_threadpool(svc.recommender.feedback, events, client_address(request, svc.settings))
    except InvalidFeedback as exc:
        errors = [{"field": f, "message": m} for f, m in exc.errors]
        return problem(422, "Invalid request", str(exc), errors=errors)
    except RateLimited as exc:
        errors = [{"field": exc.field, "message": str(exc)}]
        return problem(429, "Too many requests", str(exc), retry_after=exc.retry_after_s, errors=errors)
    return FeedbackResponse(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            Rejected(index=int(r["index"]), event_id=str(r["event_id"]), reason=str(r["reason"]))
            for r in result.rejected
        ],
    )


@router.get(
    "/v1/admin/surfaces/{surface}",
    response_model=SurfaceConfig,
    operation_id="get_surface",
    tags=["admin"],
    summary="Read a surface's exploration settings",
    responses={401: UNAUTHORIZED, 422: INVALID},
)
async def get_surface(surface: Annotated[SurfaceName, Path()], svc: ServicesDep, _: ViewerDep) -> SurfaceConfig:
    return svc.surfaces.get(surface)


@router.put(
    "/v1/admin/surfaces/{surface}",
    response_model=SurfaceConfig,
    operation_id="put_surface",
    tags=["admin"],
    summary="Change a surface's exploration settings (fields left out keep their values)",
    responses={400: BAD_BODY, 401: UNAUTHORIZED, 403: FORBIDDEN, 422: INVALID, 503: STORE_DOWN},
)
async def put_surface(
    surface: Annotated[SurfaceName, Path()],
    body: SurfaceUpdate,
    svc: ServicesDep,
    who: EditorDep,
) -> SurfaceConfig:
    current = svc.surfaces.get(surface)
    try:
        updated = SurfaceConfig.model_validate({**current.model_dump(), **body.model_dump(exclude_none=True)})
    except ValidationError as exc:
        # Field checks ran on the body already; what is left are checks across fields, each
        # named after the first field it involves (SurfaceConfig._ordered_bounds: reward_min),
        # which the error handler appends to the location (app.main._field).
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc
    try:
        await run_in_threadpool(svc.surfaces.put, surface, updated, who.name)
    except StoreUnavailable as exc:
        raise HTTPException(503, "surface settings could not be stored; nothing changed") from exc
    return updated


def _item_state(state: ItemState) -> ItemStateOut:
    r = state.record
    record = (
        None
        if r is None
        else ItemRecordOut(features=r.features, created_at=r.created_at, deleted=r.deleted, ts=r.ts, by=r.by)
    )
    return ItemStateOut(item_id=state.item_id, state=state.state, seq=state.seq, record=record)


async def _change(svc: Services, fn: Any, *args: Any) -> ItemStateOut | JSONResponse:
    """One catalogue change through the editor, its failures as problems."""
    retry = svc.settings.retry_after_s
    try:
        state = await run_in_threadpool(fn, svc.bundles.current, *args)
    except EventError as exc:
        name, _, message = str(exc).partition(": ")
        return problem(422, "Invalid request", str(exc), errors=[{"field": name, "message": message}])
    except ChangeConflict:
        return problem(409, "Conflict", "another change of this item landed first; read it and retry")
    except NotApplied:
        detail = "the change is on the items topic but the statistics store did not take it yet; retry to confirm"
        return problem(503, "Change not applied yet", detail, retry_after=retry)
    except StoreUnavailable:
        return problem(
            503, "Store unavailable", "the statistics store did not answer; nothing changed", retry_after=retry
        )
    svc.metrics.catalogue_changes.labels("delete" if state.state == "deleted" else "put").inc()
    return _item_state(state)


@router.put(
    "/v1/items/{item_id:item_id}",
    response_model=ItemStateOut,
    operation_id="put_item",
    tags=["catalogue"],
    summary="Publish or change an item: servable on every replica from its next request",
    responses={
        400: BAD_BODY,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        409: ITEM_CONFLICT,
        422: INVALID,
        503: ITEM_NOT_APPLIED,
    },
)
async def put_item(
    item_id: Annotated[Id, Path()], body: ItemPut, svc: ServicesDep, who: EditorDep
) -> ItemStateOut | JSONResponse:
    return await _change(svc, svc.editor.publish, item_id, body.features, body.created_at, who.name)


@router.delete(
    "/v1/items/{item_id:item_id}",
    response_model=ItemStateOut,
    operation_id="delete_item",
    tags=["catalogue"],
    summary="Take an item down: no replica serves it from the acknowledgement on, in any bundle",
    responses={401: UNAUTHORIZED, 403: FORBIDDEN, 409: ITEM_CONFLICT, 422: INVALID, 503: ITEM_NOT_APPLIED},
)
async def delete_item(item_id: Annotated[Id, Path()], svc: ServicesDep, who: EditorDep) -> ItemStateOut | JSONResponse:
    return await _change(svc, svc.editor.take_down, item_id, who.name)


@router.get(
    "/v1/items/{item_id:item_id}",
    response_model=ItemStateOut,
    operation_id="get_item",
    tags=["catalogue"],
    summary="An item's catalogue state and latest change",
    responses={401: UNAUTHORIZED, 404: ITEM_GONE, 422: INVALID, 503: ITEM_NOT_APPLIED},
)
async def get_item(item_id: Annotated[Id, Path()], svc: ServicesDep, _: ViewerDep) -> ItemStateOut | JSONResponse:
    try:
        state = await run_in_threadpool(svc.editor.state, svc.bundles.current, item_id)
    except StoreUnavailable:
        return problem(
            503, "Store unavailable", "the statistics store did not answer", retry_after=svc.settings.retry_after_s
        )
    if state.state == "unknown":
        return problem(404, "No such item", f"{item_id!r} is neither in the serving bundle nor in the live catalogue")
    if state.state == "deleted" and state.record is not None:
        # After a DELETE the resource is gone (RFC 9110); when and by whom is in the detail.
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.record.ts))
        return problem(404, "Item taken down", f"{item_id!r} was taken down at {when} by {state.record.by}")
    return _item_state(state)


@router.get(
    "/v1/admin/stats",
    operation_id="get_stats",
    tags=["admin"],
    summary="The last hour by minute, per surface (what the dashboard draws)",
    responses={401: UNAUTHORIZED},
)
async def admin_stats(svc: ServicesDep, _: ViewerDep) -> dict[str, Any]:
    return await run_in_threadpool(build_stats, svc)


@router.get("/dashboard", response_class=HTMLResponse, operation_id="get_dashboard", tags=["dashboard"])
async def dashboard() -> HTMLResponse:
    return HTMLResponse(DASHBOARD_HTML)


@router.get(
    "/dashboard/{asset}",
    operation_id="get_dashboard_asset",
    tags=["dashboard"],
    response_class=Response,
    responses={
        200: {"description": "The asset.", "content": {"text/javascript": TEXT, "text/css": TEXT}},
        404: problem_response("No such asset."),
        422: INVALID,
    },
)
async def dashboard_asset(
    asset: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$", examples=["dashboard.js", "dashboard.css"])],
) -> Response:
    path = STATIC / asset
    if not path.is_file():
        raise HTTPException(404, f"asset: no {asset}")
    media = "text/javascript" if asset.endswith(".js") else "text/css"
    return Response(path.read_bytes(), media_type=media)


@router.get("/healthz", response_model=Health, operation_id="get_health", tags=["health"], summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    operation_id="get_readiness",
    tags=["health"],
    summary="Readiness: 200 once a model bundle is loaded",
    responses={503: {"model": Readiness, "description": "Not ready: no model bundle is loaded yet."}},
)
async def readyz(svc: ServicesDep) -> JSONResponse:
    store_ok = await run_in_threadpool(svc.store.ping)
    bus_ok = await run_in_threadpool(svc.bus.ping)
    degraded = [] if store_ok else ["statistics store unreachable: serving priors only"]
    if not bus_ok:
        degraded.append("event broker unreachable: feedback answers 503")
    body = {
        "ready": svc.bundles.loaded,
        "bundle": svc.bundles.current.version if svc.bundles.loaded else None,
        "bundle_error": svc.bundles.last_error,
        "degraded": degraded,
    }
    return JSONResponse(body, status_code=200 if svc.bundles.loaded else 503)


@router.get(
    "/metrics",
    operation_id="get_metrics",
    tags=["health"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text exposition format.", "content": {"text/plain": TEXT}}},
)
async def metrics(svc: ServicesDep) -> Response:
    body, media_type = svc.metrics.exposition()
    return Response(body, media_type=media_type)
