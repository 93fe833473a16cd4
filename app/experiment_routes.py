"""HTTP routes of experiments per surface (``app/experiments.py``): thin, each one service call."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app import experiments
from app.dashboard import experiment_view, window_minutes
from app.experiments import Experiment
from app.main import Services
from app.models import ExperimentIn, PromoteIn, SurfaceName
from app.routes import (
    BAD_BODY,
    FORBIDDEN,
    INVALID,
    STORE_DOWN,
    UNAUTHORIZED,
    EditorDep,
    ServicesDep,
    ViewerDep,
    problem_response,
)
from app.surfaces import SurfaceConfig
from streaming.stores import StoreUnavailable

router = APIRouter()

PATH = "/v1/admin/surfaces/{surface}/experiment"
RUNNING = problem_response("The surface runs an experiment already; end or promote it first.")
NOT_RUNNING = problem_response("The surface runs no experiment.")
Surface = Annotated[SurfaceName, Path()]


def _view(svc: Services, experiment: Experiment | None, stored: bool = False) -> dict[str, Any]:
    """The experiment and its arms' figures. After a change that was ``stored``, a failed read of
    the figures gives the experiment without them (the change landed: no error for it)."""
    if experiment is None:
        return {"experiment": None, "arms": []}
    try:
        return experiment_view(svc, experiment, window_minutes(time.time()))
    except StoreUnavailable:
        if not stored:
            raise
        return {"experiment": experiment.model_dump(mode="json"), "arms": [], "degraded": ["figures unavailable"]}


def _running(svc: Services, surface: str) -> Experiment:
    experiment = svc.surfaces.experiment(surface)
    if experiment is None or not experiment.running:
        raise HTTPException(404, f"surface: {surface} runs no experiment")
    return experiment


def _store(svc: Services, experiment: Experiment, who: str, action: str) -> dict[str, Any]:
    try:
        svc.surfaces.put_experiment(experiment, who, action)
    except StoreUnavailable as exc:
        raise HTTPException(503, "the experiment could not be stored; nothing changed") from exc
    return _view(svc, experiment, stored=True)


@router.get(
    PATH,
    operation_id="get_experiment",
    tags=["admin"],
    summary="The surface's latest experiment (running or ended) with each arm's figures",
    responses={401: UNAUTHORIZED, 422: INVALID, 503: STORE_DOWN},
)
async def get_experiment(surface: Surface, svc: ServicesDep, _: ViewerDep) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        try:
            return _view(svc, svc.surfaces.experiment(surface))
        except StoreUnavailable as exc:
            raise HTTPException(503, "the statistics store did not answer") from exc

    return await run_in_threadpool(read)


@router.put(
    PATH,
    operation_id="start_experiment",
    tags=["admin"],
    status_code=201,
    summary="Start an experiment: arms with their own settings and traffic shares, each learning apart",
    responses={400: BAD_BODY, 401: UNAUTHORIZED, 403: FORBIDDEN, 409: RUNNING, 422: INVALID, 503: STORE_DOWN},
)
async def start_experiment(surface: Surface, body: ExperimentIn, svc: ServicesDep, who: EditorDep) -> dict[str, Any]:
    current = svc.surfaces.experiment(surface)
    if current is not None and current.running:
        raise HTTPException(409, f"surface: {surface} runs experiment {current.id} already; end or promote it first")
    base = svc.surfaces.get(surface)
    arms = [(a.name, a.share, a.settings.model_dump(exclude_none=True)) for a in body.arms]
    errors: list[Any] = []
    for n, (_, _, overrides) in enumerate(arms):
        try:
            SurfaceConfig.model_validate({**base.model_dump(), **overrides})
        except ValidationError as exc:
            # Each field was checked by the body's model; left are checks across fields of the
            # settings an arm makes (reward_min against reward_max), located at the arm's
            # settings (the error handler appends the field its message names).
            errors += [{**e, "loc": ("body", "arms", n, "settings", *e["loc"])} for e in exc.errors()]
    if errors:
        raise RequestValidationError(errors)
    experiment = experiments.start(surface, body.name, body.control, arms, base, who.name)
    return await run_in_threadpool(_store, svc, experiment, who.name, "started")


@router.post(
    PATH + "/promote",
    operation_id="promote_experiment_arm",
    tags=["admin"],
    summary="Promote an arm: the surface takes its settings and the experiment ends",
    responses={400: BAD_BODY, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_RUNNING, 422: INVALID, 503: STORE_DOWN},
)
async def promote_arm(surface: Surface, body: PromoteIn, svc: ServicesDep, who: EditorDep) -> dict[str, Any]:
    experiment = _running(svc, surface)
    arm = experiment.arm(body.arm)
    if arm is None:
        names = ", ".join(a.name for a in experiment.arms)
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "arm"),
                    "msg": f"{body.arm!r} is not an arm of {experiment.id} ({names})",
                    "type": "value_error",
                }
            ]
        )

    def promote() -> dict[str, Any]:
        # Settings first: if the experiment's end then fails, the arms still serve their own
        # settings, and promoting again writes the same settings and ends it.
        try:
            svc.surfaces.put(surface, arm.config, who.name)
        except StoreUnavailable as exc:
            raise HTTPException(503, "the surface settings could not be stored; nothing changed") from exc
        ended = experiment.ended(who.name, f"promoted {arm.name}")
        try:
            svc.surfaces.put_experiment(ended, who.name, f"promoted {arm.name}")
        except StoreUnavailable as exc:
            raise HTTPException(
                503,
                f"the surface took {arm.name}'s settings, but the experiment could not be marked ended; promote again",
            ) from exc
        return _view(svc, ended, stored=True)

    return await run_in_threadpool(promote)


# A POST, not a DELETE: the ended experiment stays readable (its final figures) until the next.
@router.post(
    PATH + "/end",
    operation_id="end_experiment",
    tags=["admin"],
    summary="End the experiment: every user goes back to the surface's own settings",
    responses={401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_RUNNING, 422: INVALID, 503: STORE_DOWN},
)
async def end_experiment(surface: Surface, svc: ServicesDep, who: EditorDep) -> dict[str, Any]:
    experiment = _running(svc, surface)
    return await run_in_threadpool(_store, svc, experiment.ended(who.name, "ended"), who.name, "ended")
