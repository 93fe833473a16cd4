"""The serving benchmark's baseline: FastAPI with the same request and response models and no
work behind them (no bundle, no store, no policy)."""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from app.models import RecommendedItem, RecommendRequest, RecommendResponse

app = FastAPI()


@app.post("/v1/recommend", response_model=RecommendResponse)
async def recommend(body: RecommendRequest) -> RecommendResponse:
    chosen = (body.candidates or [f"item-{n}" for n in range(body.k)])[: body.k]
    items = [RecommendedItem(item_id=i, score=0.5, explored=False, prior=0.5) for i in chosen]
    return RecommendResponse(request_id=uuid.uuid4().hex, model_version="bare", items=items, degraded=False)
