"""FastAPI application factory and the uvicorn entry point."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import omnivec

from ..bundle import BundleError, ModelBundle
from ..errors import ErrorCode, OmnivecError
from ..fetch import UrlFetcher
from ..index import IndexStore, open_store
from ..metrics import Metrics
from ..services.index_builder import IndexBuilder
from ..services.collections import CollectionService
from ..services.demo import index_demo
from ..services.embedding import EmbeddingService, load_encoders
from ..services.inputs import InputResolver
from ..services.labelsets import FileLabelSetStore, LabelSetStore, QdrantLabelSetStore
from ..services.media_store import MediaKeeper, media_store
from ..services.search import SearchService
from ..services.zero_shot import ZeroShotClassifier
from ..settings import Settings
from . import routes_classify, routes_collections, routes_embed, routes_media, routes_page, routes_search, routes_system
from .auth import ApiKeyAuth, parse_keys
from .schemas import AddItemsRequest, ClassifyRequest, EmbedRequest, ErrorResponse, SearchRequest

log = logging.getLogger("omnivec")


class BodySizeLimit:
    """Refuse bodies over the limit with 413, from Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, self._error(int(declared)))
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error(seen)
            return message

        await self.app(scope, limited_receive, send)

    def _error(self, size: int) -> OmnivecError:
        return OmnivecError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request body of {size}+ bytes is over the limit of {self.max_bytes}; split it into smaller requests "
            "(or raise OMNIVEC_LIMITS__MAX_REQUEST_BYTES)",
        )


class RequestMetrics:
    """Count requests by route template (not raw path: ids must not explode label cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.request_latency.labels(path).observe(time.monotonic() - started)


async def _send_error(send: Send, exc: OmnivecError) -> None:
    response = JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmnivecError)
    async def omnivec_error(_: Request, exc: OmnivecError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        err = OmnivecError(ErrorCode.INVALID_REQUEST, details or "invalid request")
        return JSONResponse(err.to_body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.INVALID_REQUEST
        message = f"no route {request.method} {request.url.path}; see /docs" if exc.status_code in (404, 405) else str(exc.detail)
        body = {"error": {"code": code.value, "status": exc.status_code, "message": message}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        err = OmnivecError(ErrorCode.INFERENCE_FAILED, f"internal error ({exc.__class__.__name__}); the server logged the details")
        return JSONResponse(err.to_body(), status_code=err.status)


def _openapi(app: FastAPI) -> dict:
    """Add the JSON body models that routes parse by hand (to accept JSON and multipart) to the schema."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EmbedRequest, ErrorResponse, AddItemsRequest, SearchRequest, ClassifyRequest):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    if parse_keys(app.state.settings.server.api_keys):  # the docs' "Authorize" button sends the key
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
    app.openapi_schema = schema
    return schema


_INDEX_STATE = ("store", "fetcher", "resolver", "collections", "search", "classifier", "labelsets")


def labelset_store(settings: Settings, store: IndexStore) -> LabelSetStore:
    """Label sets live where the index does: in the Qdrant server every replica shares, or in the data dir."""
    from ..index.qdrant import QdrantIndexStore

    if isinstance(store, QdrantIndexStore):
        return QdrantLabelSetStore(store)
    return FileLabelSetStore(settings.labelsets_dir)


def _start_index(app: FastAPI, settings: Settings, service: EmbeddingService, store: IndexStore) -> None:
    """Wire the index, URL fetching and classification services onto app.state."""
    limits = settings.limits
    # The download cap is the larger media limit; each modality's own limit applies once its type is known.
    fetcher = UrlFetcher(settings.fetch, max_bytes=max(limits.max_image_bytes, limits.max_audio_bytes))
    resolver = InputResolver(fetcher, settings.limits)
    media = MediaKeeper(media_store(settings, store), settings.media)
    collections = CollectionService(store, service, resolver, IndexBuilder(store, settings.index.optimize_after_points), media)
    app.state.store, app.state.fetcher, app.state.resolver = store, fetcher, resolver
    app.state.collections = collections
    app.state.search = SearchService(collections)
    app.state.classifier = ZeroShotClassifier(service)
    app.state.labelsets = labelset_store(settings, store)


def _log_demo_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("indexing the demo collection failed: %s", task.exception(), exc_info=task.exception())


def create_app(settings: Settings | None = None, service: EmbeddingService | None = None, store: IndexStore | None = None) -> FastAPI:
    """Build the app; the bundle is loaded at startup unless a ready `service` is given (tests).

    The index store is opened at startup from `settings.index` (the server process owns the Edge
    shards) and closed on shutdown, unless a `store` is given, which then stays the caller's.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = service is None
        if own:
            if settings.model.bundle is None:
                raise BundleError("no model bundle configured: pass --bundle DIR or set OMNIVEC_MODEL__BUNDLE (create one with `omnivec export`)")
            app.state.service = EmbeddingService(ModelBundle.load(settings.model.bundle), settings, metrics=app.state.metrics)
        else:
            app.state.service = service
        own_store = store is None
        try:
            index_store = await asyncio.to_thread(open_store, settings) if own_store else store
        except BaseException:
            if own:
                await app.state.service.close()
            raise
        _start_index(app, settings, app.state.service, index_store)
        if settings.demo_items is not None:
            app.state.demo_task = asyncio.create_task(index_demo(app.state.collections, settings.demo_items))
            app.state.demo_task.add_done_callback(_log_demo_failure)
        log.info("serving %s (%s)", app.state.service.manifest.model_name, ", ".join(app.state.service.modalities))
        try:
            yield
        finally:
            if app.state.demo_task is not None:
                app.state.demo_task.cancel()
                await asyncio.gather(app.state.demo_task, return_exceptions=True)
                app.state.demo_task = None
            await app.state.collections.builder.close()
            await app.state.fetcher.aclose()
            if own_store:
                await asyncio.to_thread(index_store.close)
            for name in _INDEX_STATE:
                setattr(app.state, name, None)
            if own:
                await app.state.service.close()
            app.state.service = None

    app = FastAPI(
        title="omnivec",
        version=omnivec.__version__,
        description="Multimodal embeddings in one shared space: embed images, texts and audio, index them in collections, "
        "search across modalities and classify zero-shot.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = None
    app.state.demo_task = None
    for name in _INDEX_STATE:
        setattr(app.state, name, None)
    app.state.metrics = service.metrics if service is not None and service.metrics is not None else Metrics()
    _install_error_handlers(app)
    app.include_router(routes_system.router)
    app.include_router(routes_embed.router)
    app.include_router(routes_collections.router)
    app.include_router(routes_search.router)
    app.include_router(routes_classify.router)
    app.include_router(routes_media.router)
    app.include_router(routes_page.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_request_bytes)
    if keys := parse_keys(settings.server.api_keys):
        app.add_middleware(ApiKeyAuth, keys=keys, send_error=_send_error)  # before the body is read
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # outermost: counts 401s and 413s too
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def run_server(settings: Settings) -> None:
    """Validate the bundle before binding the port, then serve with uvicorn."""
    import uvicorn

    if settings.model.bundle is None:
        raise BundleError("no model bundle configured: pass --bundle DIR or set OMNIVEC_MODEL__BUNDLE (create one with `omnivec export`)")
    bundle = ModelBundle.load(settings.model.bundle)
    if settings.model.backend == "triton":  # an unreachable Triton or a wrong repository is a clear error, not a startup traceback
        for encoder in load_encoders(bundle, settings).values():
            encoder.close()
    logging.basicConfig(level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        timeout_graceful_shutdown=30,
    )
