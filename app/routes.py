"""HTTP routes: thin; each is one service call."""

from __future__ import annotations

import hmac
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.dashboard import build_stats
from app.main import Services
from app.models import (
    FeedbackRequest,
    FeedbackResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    Rejected,
    SurfaceName,
    SurfaceUpdate,
)
from app.surfaces import SurfaceConfig
from streaming.events import FeedbackEvent
from streaming.stores import StoreUnavailable

router = APIRouter()

STATIC = FilePath(__file__).parent / "static"
DASHBOARD_HTML = (STATIC / "dashboard.html").read_text()


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


def operator(svc: ServicesDep, authorization: Annotated[str | None, Header()] = None) -> str:
    expected = svc.settings.operator_token.get_secret_value()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(401, "Authorization: a valid operator bearer token is required")
    return "operator"


OperatorDep = Annotated[str, Depends(operator)]


@router.post("/v1/recommend", response_model=RecommendResponse)
async def recommend(body: RecommendRequest, svc: ServicesDep) -> RecommendResponse:
    rec = await run_in_threadpool(
        svc.recommender.recommend,
        body.user_id,
        body.surface,
        body.k,
        body.candidates,
        body.exclude,
        body.user_features,
    )
    return RecommendResponse(
        request_id=rec.request_id,
        model_version=rec.model_version,
        items=[
            RecommendedItem(item_id=i.item_id, score=i.score, explored=i.explored, prior=i.prior) for i in rec.items
        ],
        degraded=rec.degraded,
        degraded_reasons=rec.degraded_reasons,
        unknown_candidates=rec.unknown_candidates,
    )


@router.post("/v1/feedback", status_code=202, response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, svc: ServicesDep) -> FeedbackResponse:
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
    result = await run_in_threadpool(svc.recommender.feedback, events)
    return FeedbackResponse(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            Rejected(index=int(r["index"]), event_id=str(r["event_id"]), reason=str(r["reason"]))
            for r in result.rejected
        ],
    )


@router.get("/v1/admin/surfaces/{surface}", response_model=SurfaceConfig)
async def get_surface(surface: Annotated[SurfaceName, Path()], svc: ServicesDep, _: OperatorDep) -> SurfaceConfig:
    return svc.surfaces.get(surface)


@router.put("/v1/admin/surfaces/{surface}", response_model=SurfaceConfig)
async def put_surface(
    surface: Annotated[SurfaceName, Path()],
    body: SurfaceUpdate,
    svc: ServicesDep,
    who: OperatorDep,
    x_operator: Annotated[str | None, Header(max_length=64)] = None,
) -> SurfaceConfig:
    current = svc.surfaces.get(surface)
    updated = SurfaceConfig.model_validate({**current.model_dump(), **body.model_dump(exclude_none=True)})
    try:
        await run_in_threadpool(svc.surfaces.put, surface, updated, x_operator or who)
    except StoreUnavailable as exc:
        raise HTTPException(503, "surface settings could not be stored; nothing changed") from exc
    return updated


@router.get("/v1/admin/stats")
async def admin_stats(svc: ServicesDep, _: OperatorDep) -> dict[str, Any]:
    return await run_in_threadpool(build_stats, svc)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(DASHBOARD_HTML)


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$")]) -> Response:
    path = STATIC / asset
    if not path.is_file():
        raise HTTPException(404, f"asset: no {asset}")
    media = "text/javascript" if asset.endswith(".js") else "text/css"
    return Response(path.read_bytes(), media_type=media)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
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


@router.get("/metrics")
async def metrics(svc: ServicesDep) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
