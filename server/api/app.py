"""FastAPI application factory and the uvicorn entry point."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import omnivec

from ..bundle import BundleError, ModelBundle
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
from .error_handlers import install_error_handlers, send_error
from .middleware import BodySizeLimit, RequestMetrics
from .routes_collections import FileItemMeta
from .routes_system import UPLOAD_PATH
from .routes_openai import served_model_names
from .schemas import LIMIT, AddItemsRequest, ClassifyOptionsIn, ClassifyRequest, EmbedRequest, ErrorResponse, SearchOptionsIn, SearchRequest
from .schemas_openai import EmbeddingsRequest, OpenAIErrorResponse

log = logging.getLogger("omnivec")


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
    install_error_handlers(app)
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
        app.add_middleware(ApiKeyAuth, keys=keys + parse_keys(settings.server.admin_keys), send_error=send_error)  # before the body is read
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
