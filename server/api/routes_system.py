"""Health, readiness and model information."""

from __future__ import annotations

from datetime import datetime, timezone
import asyncio
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ErrorCode, OmnivecError, error_responses
from .json_limits import BoundedJsonRoute
from ..bundle import BundleError, ModelBundle, unpack_bundle
from ..services.models import LoadedModel, ModelRegistry
from .auth import require_admin
from .responses import STARTING, VALIDATED, route_errors
from .schemas import NAME_PATTERN, HealthOut, LoadModelRequest, ModelInfo, ModelName, ModelsResponse, ReadyOut, TowerInfo

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


def model_info(entry: LoadedModel) -> ModelInfo:
    """What GET /v1/models says about one model, in any state (towers and parity once it is ready)."""
    service, manifest = entry.service, entry.manifest
    towers = []
    if service is not None:
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
    return ModelInfo(
        name=entry.name,
        space_id=entry.space_id or "",
        dim=manifest.embed_dim if manifest else 0,
        modalities=service.modalities if service is not None else list(manifest.towers) if manifest else [],
        scoring=manifest.scoring.model_dump() if manifest else {},
        towers=towers,
        parity=service.bundle.parity_report() if service is not None else {},
        source=manifest.source if manifest else {},
        default=entry.default,
        state=entry.state,
        progress=entry.progress,
        error=entry.error,
        bundle=str(entry.bundle_path),
        load_s=entry.load_s,
        loaded_at=datetime.fromtimestamp(entry.started_at, timezone.utc).isoformat(timespec="seconds"),
    )


def _models(request: Request) -> ModelRegistry:
    models = getattr(request.app.state, "models", None)
    if models is None or models.default_name is None:
        raise OmnivecError(ErrorCode.NOT_READY, "the model is still loading; retry in a few seconds")
    return models


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    summary="What is loaded: each model's modalities, dim, space id, parity on this host, load time",
    description="`data` lists the ready models (the default first); `pending` the ones loading, unloading or whose load failed.",
    responses=route_errors(STARTING),
)
async def models(request: Request) -> ModelsResponse:
    registry = _models(request)
    infos = [model_info(m) for m in registry.entries()]
    return ModelsResponse(data=[i for i in infos if i.state == "ready"], pending=[i for i in infos if i.state != "ready"])


@router.get(
    "/v1/models/{name}",
    response_model=ModelInfo,
    summary="One model, in any state: progress while loading, the error of a failed load",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.MODEL_NOT_FOUND,)),
)
async def get_model(request: Request, name: ModelName) -> ModelInfo:
    return model_info(_models(request).entry(name))


@router.post(
    "/v1/models",
    status_code=202,
    response_model=ModelInfo,
    summary="Load a bundle next to the served models, in the background (admin)",
    description="The manifest is checked at once (422 invalid_bundle); the towers are opened and probed on a worker thread while "
    "the server keeps serving. Poll GET /v1/models/{name}: `state` goes loading -> ready (listed in GET /v1/models) or failed "
    "(with `error`). Needs an admin key when API keys are set.",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.FORBIDDEN, ErrorCode.INVALID_BUNDLE, ErrorCode.MODEL_CONFLICT)),
    dependencies=[Depends(require_admin)],
)
async def load_model(request: Request, body: LoadModelRequest) -> ModelInfo:
    registry = _models(request)
    entry = registry.start_load(Path(body.bundle), body.name)  # reads only the manifest; the towers load on a thread
    return model_info(entry)


UPLOAD_PATH = "/v1/models/upload"
ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar", "application/octet-stream", "application/x-xz", "application/x-bzip2")


@router.post(
    UPLOAD_PATH,
    status_code=202,
    response_model=ModelInfo,
    summary="Upload a bundle archive and load it in the background (admin)",
    description="The body is a tar archive (plain, gzip, bzip2 or xz) of a bundle directory, e.g. `tar czf - -C runs/ft/bundle .`, "
    "at most limits.max_bundle_upload_bytes. It is unpacked under data_dir/models/<name> (no paths out of it) and loaded as POST "
    "/v1/models loads a path. `name` defaults to the manifest's model name. Needs an admin key when API keys are set.",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.FORBIDDEN, ErrorCode.INVALID_BUNDLE, ErrorCode.MODEL_CONFLICT, ErrorCode.UNSUPPORTED_MEDIA_TYPE)),
    dependencies=[Depends(require_admin)],
    openapi_extra={"requestBody": {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in ARCHIVE_TYPES}}},
)
async def upload_model(
    request: Request,
    name: Annotated[
        str | None, Query(max_length=128, description="letters, digits, '_', '.' and '-', starting with a letter or digit (checked by the server: 422)")
    ] = None,
) -> ModelInfo:
    # The rule is checked here rather than as a schema `pattern`: fuzzers cannot draw enough query strings matching it.
    if name is not None and not re.fullmatch(NAME_PATTERN, name):
        raise OmnivecError(
            ErrorCode.INVALID_REQUEST, f"name {name!r} is not a valid model name: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    registry = _models(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ARCHIVE_TYPES:
        raise OmnivecError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"content type {kind or 'none'!r} is not a bundle archive; send application/gzip (tar czf) or application/x-tar")
    root = Path(request.app.state.settings.data_dir) / "models"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        archive = work / "bundle.tar"
        with open(archive, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
        try:
            bundle_dir = await asyncio.to_thread(unpack_bundle, archive, work / "bundle")
            manifest = ModelBundle.load(bundle_dir).manifest
        except BundleError as exc:
            raise OmnivecError(ErrorCode.INVALID_BUNDLE, str(exc)) from exc
        final = root / (name or manifest.model_name)
        if final.name not in {e.name for e in registry.entries()} and final.exists():
            shutil.rmtree(final)  # an earlier upload under this name, not served now
        if final.exists():
            raise OmnivecError(ErrorCode.MODEL_CONFLICT, f"a model named {final.name!r} is served from {final}; unload it first or upload under another ?name=")
        bundle_dir.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model_info(registry.start_load(final, final.name))


@router.delete(
    "/v1/models/{name}",
    response_model=ModelInfo,
    summary="Unload a model after the requests using it finished (admin)",
    description="New requests naming the model get 404 model_not_found at once; the call returns once the requests already "
    "using it finished and its towers are closed. 409 for the default model, a model still loading, or one a running re-embed "
    "uses. Needs an admin key when API keys are set.",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.FORBIDDEN, ErrorCode.MODEL_NOT_FOUND, ErrorCode.MODEL_CONFLICT)),
    dependencies=[Depends(require_admin)],
)
async def unload_model(request: Request, name: ModelName) -> ModelInfo:
    entry = await _models(request).unload(name)
    return model_info(entry)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}, **error_responses(*OPEN)},
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
