"""FastAPI application factory and the uvicorn entry point."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import omnivec

from ..bundle import BundleError, ModelBundle
from ..errors import ErrorCode, OmnivecError, status_code
from ..fetch import UrlFetcher
from ..index import IndexStore, open_store
from ..metrics import Metrics
from ..services.index_builder import IndexBuilder
from ..services.collections import CollectionService
from ..services.demo import index_demo
from ..services.embedding import EmbeddingService, load_encoders
from ..services.inputs import InputResolver
from ..services.labelsets import LabelSetStore
from ..services.media_keeper import MediaKeeper
from ..services.models import ModelRegistry, parse_bundle_arg
from ..services.reembed import Reembedder
from ..services.search import SearchService
from ..settings import Settings
from . import routes_classify, routes_collections, routes_embed, routes_media, routes_openai, routes_page, routes_reembed, routes_search, routes_system
from .admission import Admission
from .auth import ApiKeyAuth, parse_keys
from .bodies import error_text
from .routes_collections import FileItemMeta
from .routes_system import UPLOAD_PATH
from .routes_openai import OPENAI_PATHS, openai_error_body, served_model_names
from .schemas import LIMIT, AddItemsRequest, ClassifyOptionsIn, ClassifyRequest, EmbedRequest, ErrorResponse, SearchOptionsIn, SearchRequest
from .schemas_openai import EmbeddingsRequest, OpenAIErrorResponse

log = logging.getLogger("omnivec")


class BodySizeLimit:
    """Refuse bodies over the limit with 413, from Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}  # routes with a limit of their own (bundle uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.per_path:
            await BodySizeLimit(self.app, self.per_path[scope["path"]])(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, self._error(int(declared)), scope)
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
            "(or raise OMNIVEC_LIMITS__MAX_REQUEST_BYTES; bundle uploads: OMNIVEC_LIMITS__MAX_BUNDLE_UPLOAD_BYTES)",
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


def error_response(path: str, exc: OmnivecError, request_id: str | None = None) -> JSONResponse:
    """An error in the API's shape, or in OpenAI's on the OpenAI-compatible routes (so OpenAI clients surface it)."""
    body = openai_error_body(exc) if path in OPENAI_PATHS else exc.to_body(request_id=request_id)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _send_error(send: Send, exc: OmnivecError, scope: Scope | None = None) -> None:
    response = error_response((scope or {}).get("path", ""), exc)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


def request_id(request: Request) -> str:
    """The caller's X-Request-ID if it sent one, else a fresh id: the key to this request's log lines."""
    given = request.headers.get("x-request-id", "")
    return given[:64] if given.isprintable() and given.strip() else uuid.uuid4().hex


def _flat_routes(app: FastAPI) -> list:
    """Every route, with included routers expanded (FastAPI >= 0.16x keeps them as one entry each)."""
    from fastapi import routing

    if hasattr(routing, "iter_route_contexts"):
        return list(routing.iter_route_contexts(app.routes))
    return list(app.routes)


def allowed_methods(request: Request) -> list[str]:
    """The methods of the path's resource, for `Allow` on a 405.

    Several routes can match one URL (GET and DELETE on /v1/collections/{name} are two routes, and
    .../items/{item_id:path} also matches .../items/scroll); as in OpenAPI, a concrete template wins over
    a more templated one, and the methods of the equally concrete matches are joined.
    """
    found: dict[int, set[str]] = {}
    for route in _flat_routes(request.app):
        methods = getattr(route, "methods", None)
        if not methods or route.matches(request.scope)[0] == Match.NONE:
            continue
        found.setdefault(route.path.count("{"), set()).update(methods)
    return sorted(found[min(found)]) if found else []


def _validation_message(request: Request, exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        if e.get("type") == "json_invalid":  # FastAPI's JSON parse error: the reason is in ctx
            parts.append(f"the body is not acceptable JSON: {(e.get('ctx') or {}).get('error', 'JSON decode error')}")
        else:
            what = "label set" if request.url.path.startswith("/v1/labelsets") or where.endswith("labelset") else "collection"
            parts.append(f"{where}: {error_text(e).replace('invalid name', f'invalid {what} name')}")
    return "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmnivecError)
    async def omnivec_error(request: Request, exc: OmnivecError) -> JSONResponse:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = ErrorCode.UNKNOWN_FIELD if errors and all(e.get("type") == "extra_forbidden" for e in errors) else ErrorCode.INVALID_REQUEST
        err = OmnivecError(code, _validation_message(request, exc) or "invalid request")
        return error_response(request.url.path, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Framework errors (routing, form parsing) mapped onto the error table, so the status matches the code."""
        path = request.url.path
        if exc.status_code == 404:
            err = OmnivecError(ErrorCode.NOT_FOUND, f"no route {request.method} {path}; see /docs")
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            err = OmnivecError(
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {path}; it accepts {', '.join(allowed)} (see /docs)",
                headers={"Allow": ", ".join(allowed)},
            )
        elif str(exc.detail).startswith("Too many"):  # multipart: more files or fields than the limit
            err = OmnivecError(ErrorCode.TOO_MANY_INPUTS, f"{exc.detail}; split the request")
        else:
            err = OmnivecError(status_code(exc.status_code), str(exc.detail), headers=getattr(exc, "headers", None))
        return error_response(path, err)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.error("unhandled error in %s %s [request %s]", request.method, request.url.path, rid, exc_info=exc)
        err = OmnivecError(
            ErrorCode.INTERNAL,
            f"internal error ({exc.__class__.__name__}); the server logged the details under request id {rid}",
            headers={"X-Request-ID": rid},
        )
        return error_response(request.url.path, err, request_id=rid)


def _openapi(app: FastAPI) -> dict:
    """Add the JSON body models that routes parse by hand (to accept JSON and multipart) to the schema."""
    models = getattr(app.state, "models", None)
    if app.openapi_schema and models is not None and getattr(app.state, "openapi_for", None) == tuple(models.names()):
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (
        EmbedRequest, ErrorResponse, AddItemsRequest, SearchRequest, SearchOptionsIn, ClassifyRequest, ClassifyOptionsIn, FileItemMeta,
        EmbeddingsRequest, OpenAIErrorResponse,
    ):  # fmt: skip
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    _apply_limits(schema, _limit_values(app))
    if parse_keys(app.state.settings.server.api_keys):  # the docs' "Authorize" button sends the key
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
    models = getattr(app.state, "models", None)
    if models is not None and models.default_name is not None:  # cache while the set of models and their names stay the same
        app.state.openapi_for = tuple(models.names())
        app.openapi_schema = schema
    return schema


def _limit_values(app: FastAPI) -> dict[str, dict]:
    """What each `LIMIT` marker becomes in the document: the running server's settings and model."""
    limits = app.state.settings.limits
    values: dict[str, dict] = {
        "max_inputs_per_request": {"maxItems": limits.max_inputs_per_request},
        "max_text_chars": {"maxLength": limits.max_text_chars},
    }
    models = getattr(app.state, "models", None)
    if models is not None and models.default_name is not None:
        values["served_models"] = {"enum": served_model_names(models)}
        values["embed_dim"] = {"maximum": max(m.service.manifest.embed_dim for m in models.ready())}
    return values


def _apply_limits(node: object, values: dict[str, dict]) -> None:
    """Replace every `LIMIT` marker in the schema by the bound it stands for (dropped when unknown, e.g. no model yet)."""
    if isinstance(node, dict):
        name = node.pop(LIMIT, None)
        if name is not None:
            node.update(values.get(name, {}))
        for child in node.values():
            _apply_limits(child, values)
    elif isinstance(node, list):
        for child in node:
            _apply_limits(child, values)


_INDEX_STATE = ("store", "fetcher", "resolver", "collections", "search", "labelsets", "reembeds")


def _start_index(app: FastAPI, settings: Settings, models: ModelRegistry, store: IndexStore) -> None:
    """Wire the index, URL fetching and classification services onto app.state."""
    limits = settings.limits
    # The download cap is the larger media limit; each modality's own limit applies once its type is known.
    fetcher = UrlFetcher(settings.fetch, max_bytes=max(limits.max_image_bytes, limits.max_audio_bytes))
    resolver = InputResolver(fetcher, settings.limits)
    media = MediaKeeper(store.media(), settings.media)
    collections = CollectionService(store, models, resolver, IndexBuilder(store, settings.index.optimize_after_points), media)
    app.state.store, app.state.fetcher, app.state.resolver = store, fetcher, resolver
    app.state.collections = collections
    app.state.search = SearchService(store, models, resolver)
    app.state.labelsets = LabelSetStore(store.documents("labelsets"))  # where the index lives: shared by every replica of it
    app.state.reembeds = Reembedder(store, collections, models, resolver, page=settings.index.reembed_page)


def _log_demo_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("indexing the demo collection failed: %s", task.exception(), exc_info=task.exception())


def create_app(settings: Settings | None = None, service: EmbeddingService | None = None, store: IndexStore | None = None) -> FastAPI:
    """Build the app; the bundle is loaded at startup unless a ready `service` is given (tests).

    The index store is opened at startup from `settings.index` (the server process owns the Edge
    shards) and closed on shutdown, unless a `store` is given, which then stays the caller's.
    """
    settings = settings or Settings()

    own_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = ModelRegistry(settings, metrics=app.state.metrics)
        app.state.models = models
        try:
            if service is None:
                if settings.model.bundle is None:
                    raise BundleError("no model bundle configured: pass --bundle DIR or set OMNIVEC_MODEL__BUNDLE (create one with `omnivec export`)")
                await models.load_now(Path(settings.model.bundle), settings.model.name, default=True)
            else:
                models.add(settings.model.name or service.manifest.model_name, service, Path(settings.model.bundle or "."), default=True, owned=False)
            for extra in settings.model.extra_bundles():  # `--bundle A --bundle B`: B, C, ... next to the default
                name, path = parse_bundle_arg(extra)
                await models.load_now(path, name)
            app.state.service = models.default.service
            index_store = await asyncio.to_thread(open_store, settings) if own_store else store
        except BaseException:
            await models.close()
            raise
        _start_index(app, settings, models, index_store)
        await app.state.reembeds.resume_all()  # re-embeds a restart interrupted carry on
        if settings.demo_items is not None:
            app.state.demo_task = asyncio.create_task(index_demo(app.state.collections, settings.demo_items))
            app.state.demo_task.add_done_callback(_log_demo_failure)
        for entry in models.ready():
            log.info("serving %s%s (%s)", entry.name, " (default)" if entry.default else "", ", ".join(entry.service.modalities))  # type: ignore[union-attr]
        try:
            yield
        finally:
            if app.state.demo_task is not None:
                app.state.demo_task.cancel()
                await asyncio.gather(app.state.demo_task, return_exceptions=True)
                app.state.demo_task = None
            await app.state.reembeds.close()
            await app.state.collections.builder.close()
            await app.state.fetcher.aclose()
            if own_store:
                await asyncio.to_thread(index_store.close)
            for name in _INDEX_STATE:
                setattr(app.state, name, None)
            await models.close()
            app.state.service = app.state.models = None

    app = FastAPI(
        title="omnivec",
        version=omnivec.__version__,
        description="Multimodal embeddings in one shared space: embed images, texts and audio, index them in collections, "
        "search across modalities and classify zero-shot.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.admission = Admission(settings.limits.max_concurrent_requests)
    app.state.service = None
    app.state.models = None
    app.state.demo_task = None
    for name in _INDEX_STATE:
        setattr(app.state, name, None)
    app.state.metrics = service.metrics if service is not None and service.metrics is not None else Metrics()
    _install_error_handlers(app)
    app.include_router(routes_system.router)
    app.include_router(routes_embed.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_collections.router)
    app.include_router(routes_search.router)
    app.include_router(routes_classify.router)
    app.include_router(routes_media.router)
    app.include_router(routes_reembed.router)
    app.include_router(routes_page.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_request_bytes, per_path={UPLOAD_PATH: settings.limits.max_bundle_upload_bytes})
    if keys := parse_keys(settings.server.api_keys):  # admin keys are API keys too
        app.add_middleware(ApiKeyAuth, keys=keys + parse_keys(settings.server.admin_keys), send_error=_send_error)  # before the body is read
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # outermost: counts 401s and 413s too
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def run_server(settings: Settings) -> None:
    """Validate the bundle before binding the port, then serve with uvicorn."""
    import uvicorn

    if settings.model.bundle is None:
        raise BundleError("no model bundle configured: pass --bundle DIR or set OMNIVEC_MODEL__BUNDLE (create one with `omnivec export`)")
    bundle = ModelBundle.load(settings.model.bundle)
    for extra in settings.model.extra_bundles():  # a wrong path is a clear error before the port is bound
        ModelBundle.load(parse_bundle_arg(extra)[1])
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
