"""Health, readiness and model information."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ErrorCode, OmnivecError, error_responses
from .json_limits import BoundedJsonRoute
from .responses import STARTING, route_errors
from .schemas import HealthOut, ModelInfo, ModelsResponse, ReadyOut, TowerInfo

router = APIRouter(route_class=BoundedJsonRoute)


# Probes and /metrics stay open with API keys set (no 401); only an oversized body or a crash fails them.
OPEN = (ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.INFERENCE_FAILED)


@router.get("/healthz", summary="Liveness: the process is up", response_model=HealthOut, responses=error_responses(*OPEN))
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the model is loaded and requests will be served",
    response_model=ReadyOut,
    responses={**error_responses(*OPEN), 503: {"model": ReadyOut, "description": "still loading the model or indexing the demo collection"}},
)
async def readyz(request: Request) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    demo = getattr(request.app.state, "demo_task", None)
    if demo is not None and not demo.done():
        return JSONResponse({"status": "indexing the demo collection", "model": service.manifest.model_name}, status_code=503)
    body = {"status": "ready", "model": service.manifest.model_name}
    if demo is not None:
        failed = demo.cancelled() or demo.exception() is not None
        body["demo"] = "failed (see the server log)" if failed else f"{demo.result()} items in collection 'demo'"
    return JSONResponse(body)


@router.get("/v1/models", response_model=ModelsResponse, summary="What is loaded: modalities, dim, space id, parity", responses=route_errors(STARTING))
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
            probe=probe.as_dict() if (probe := getattr(service.encoders[m], "probe", None)) is not None else None,
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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}, **error_responses(*OPEN)},
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
