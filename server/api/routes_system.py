"""Health, readiness and model information."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ErrorCode, OmnivecError
from .schemas import ModelInfo, ModelsResponse, TowerInfo

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the model is loaded and requests will be served")
async def readyz(request: Request) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model": service.manifest.model_name})


@router.get("/v1/models", response_model=ModelsResponse, summary="What is loaded: modalities, dim, space id, parity")
async def models(request: Request) -> ModelsResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise OmnivecError(ErrorCode.NOT_READY, "the model is still loading; retry in a few seconds")
    manifest = service.manifest
    towers = [
        TowerInfo(
            modality=m,
            precision=service.precisions[m],
            file=service.bundle.tower_path(m, service.precisions[m]).name,
            providers=list(getattr(service.encoders[m], "providers", [])),
        )
        for m in service.modalities
    ]
    info = ModelInfo(
        name=manifest.model_name,
        space_id=manifest.space_id,
        dim=manifest.embed_dim,
        modalities=service.modalities,
        scoring=manifest.scoring.model_dump(),
        towers=towers,
        parity=service.bundle.parity_report(),
        source=manifest.source,
    )
    return ModelsResponse(data=[info])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
