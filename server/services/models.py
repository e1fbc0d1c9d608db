"""The models this server serves: several bundles at once, each with its own towers and batchers.

One model is the default (requests without `model` use it; it cannot be unloaded). Others are
loaded and unloaded while the server runs: a load runs on a worker thread (probing every tower on
this host, as at startup) and the model is listed once ready; an unload first stops new work from
reaching the model, waits for the work already holding it (a `lease`) to finish, then closes it.

Collections remember their embedding space; `for_space` finds the loaded model that embeds into
it, so adding to or searching a collection never needs the caller to name a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Literal

from ..bundle import BundleError, Manifest, ModelBundle
from ..errors import ErrorCode, OmnivecError
from ..metrics import Metrics
from ..settings import Settings
from .embedding import EmbeddingService
from .zero_shot import ZeroShotClassifier

if TYPE_CHECKING:  # pragma: no cover
    from ..index.store import CollectionMeta

log = logging.getLogger("omnivec.models")

ModelState = Literal["loading", "ready", "failed", "unloading"]
Loader = Callable[[ModelBundle, Settings, Metrics | None, Callable[[str], None]], EmbeddingService]


def default_loader(bundle: ModelBundle, settings: Settings, metrics: Metrics | None, progress: Callable[[str], None]) -> EmbeddingService:
    """Open every tower of the bundle (probing it on this host) and its batchers."""
    return EmbeddingService(bundle, settings, metrics=metrics, on_tower=progress)


@dataclass
class LoadedModel:
    """One model the server knows about, whatever its state (a failed load stays listed with its error)."""

    name: str
    bundle_path: Path
    state: ModelState = "loading"
    default: bool = False
    service: EmbeddingService | None = None
    classifier: ZeroShotClassifier | None = None
    space_id: str | None = None
    manifest: Manifest | None = None
    progress: str = "queued"
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    load_s: float | None = None
    owned: bool = True  # False: the caller made the service and closes it (tests)
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task | None" = None

    def ready(self, service: EmbeddingService) -> None:
        service.name = self.name  # messages name the model as clients call it, not by its manifest
        self.service, self.classifier = service, ZeroShotClassifier(service)
        self.space_id, self.manifest = service.manifest.space_id, service.manifest
        self.state, self.progress = "ready", "ready"
        self.load_s = round(time.time() - self.started_at, 3)


def parse_bundle_arg(value: str | Path) -> tuple[str | None, Path]:
    """'[NAME=]DIR' -> (NAME or None, DIR): a name is needed when two bundles share a manifest name."""
    text = str(value)
    name, sep, path = text.partition("=")
    if sep and name and "/" not in name and not Path(text).exists():
        return name, Path(path)
    return None, Path(text)


class ModelRegistry:
    """Named models; one default. Thread-unsafe by design: used from the event loop only."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, loader: Loader = default_loader) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loader = loader
        self._models: dict[str, LoadedModel] = {}
        self.default_name: str | None = None
        self.busy: dict[str, str] = {}  # model name -> why it may not be unloaded (a running re-embed)

    # -- reading --------------------------------------------------------------------------------

    def entries(self) -> list[LoadedModel]:
        """Every known model, default first, then by name."""
        return sorted(self._models.values(), key=lambda m: (not m.default, m.name))

    def ready(self) -> list[LoadedModel]:
        return [m for m in self.entries() if m.state == "ready"]

    def names(self) -> list[str]:
        """The names `model` may take in a request."""
        return [m.name for m in self.ready()]

    @property
    def default(self) -> LoadedModel:
        if self.default_name is None:
            raise OmnivecError(ErrorCode.NOT_READY, "the default model is still loading; retry in a few seconds")
        return self._models[self.default_name]

    def entry(self, name: str) -> LoadedModel:
        """Any known model by name (also while loading or after a failed load); 404 otherwise."""
        found = self._models.get(name)
        if found is None:
            raise OmnivecError(ErrorCode.MODEL_NOT_FOUND, f"no model {name!r} here; the loaded models are {self.names()} (GET /v1/models)")
        return found

    def get(self, name: str | None = None) -> LoadedModel:
        """A ready model by name, or the default; 404 model_not_found naming the loaded ones."""
        if name is None:
            return self.default
        found = self._models.get(name)
        if found is None or found.state != "ready":
            why = f" (it is {found.state})" if found is not None else ""
            raise OmnivecError(
                ErrorCode.MODEL_NOT_FOUND,
                f"the model {name!r} is not served here{why}; the loaded models are {self.names()} (GET /v1/models), "
                "or load it with POST /v1/models",
            )
        return found

    def for_collection(self, meta: "CollectionMeta", action: str) -> LoadedModel:
        """The ready model of the collection's space (what adds and model queries use); 409 naming the model to load otherwise."""
        return self.for_space(meta.space_id, meta.model, meta.name, action)

    def for_space(self, space_id: str, model: str, collection: str, action: str) -> LoadedModel:
        """The ready model embedding into `space_id`; 409 naming the model to load otherwise."""
        for entry in self.ready():
            if entry.space_id == space_id:
                return entry
        loaded = ", ".join(f"{m.name} ({m.space_id})" for m in self.ready()) or "none"
        raise OmnivecError(
            ErrorCode.SPACE_MISMATCH,
            f"cannot {action} collection {collection!r}: it holds vectors of space {space_id!r} (model {model!r}) and no loaded "
            f"model embeds into that space (loaded: {loaded}); vectors of different spaces are not comparable. Load the bundle of "
            f'{model!r} (POST /v1/models {{"bundle": "<its directory>"}}, or `omnivec serve --bundle ...`), re-embed the collection '
            f"into a loaded model's space (POST /v1/collections/{collection}/reembed), or create a new collection for a loaded model.",
        )

    # -- leases: in-flight work, so an unload can drain -----------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, entry: LoadedModel) -> AsyncIterator[EmbeddingService]:
        """Hold `entry` while using its service; an unload waits for every lease to end."""
        if entry.state != "ready" or entry.service is None:
            self.get(entry.name)  # the 404 that says it is unloading
        entry.in_flight += 1
        entry._idle.clear()
        try:
            yield entry.service  # type: ignore[misc]
        finally:
            entry.in_flight -= 1
            if entry.in_flight == 0:
                entry._idle.set()

    def use(self, name: str | None = None) -> "contextlib.AbstractAsyncContextManager[EmbeddingService]":
        return self.lease(self.get(name))

    # -- loading --------------------------------------------------------------------------------

    def add(self, name: str, service: EmbeddingService, path: Path, *, default: bool = False, owned: bool = True) -> LoadedModel:
        """A model already loaded (startup, or a service a test built)."""
        self._check_new(name, service.manifest.space_id)
        entry = LoadedModel(name=name, bundle_path=path, default=default, owned=owned)
        entry.ready(service)
        entry.load_s = None
        self._models[name] = entry
        if default:
            self.default_name = name
        return entry

    async def load_now(self, path: Path, name: str | None = None, *, default: bool = False) -> LoadedModel:
        """Load a bundle and wait for it (startup); BundleError for a bundle that cannot be served."""
        entry = self.start_load(path, name, default=default)
        await asyncio.shield(entry.task)  # type: ignore[arg-type]
        if entry.state == "failed":
            self._models.pop(entry.name, None)
            raise BundleError(entry.error or f"loading {path} failed")
        return entry

    def start_load(self, path: Path, name: str | None = None, *, default: bool = False) -> LoadedModel:
        """Check the bundle's manifest now (422 invalid_bundle, 409 name taken) and load its towers in the background."""
        try:
            bundle = ModelBundle.load(path)
        except BundleError as exc:
            raise OmnivecError(ErrorCode.INVALID_BUNDLE, f"cannot load the bundle at {str(path)!r}: {exc}") from exc
        name = name or bundle.manifest.model_name
        self._check_new(name, bundle.manifest.space_id)
        entry = LoadedModel(name=name, bundle_path=Path(path), default=default, space_id=bundle.manifest.space_id, manifest=bundle.manifest)
        self._models[name] = entry
        entry.task = asyncio.create_task(self._load(entry, bundle))
        return entry

    def _check_new(self, name: str, space_id: str) -> None:
        existing = self._models.get(name)
        if existing is not None and existing.state != "failed":
            raise OmnivecError(
                ErrorCode.MODEL_CONFLICT,
                f"a model named {name!r} is already {existing.state} (space {existing.space_id}); unload it first "
                "(DELETE /v1/models/{name}) or give the new one another \"name\"",
            )
        for other in self._models.values():
            if other.space_id == space_id and other.state in ("loading", "ready") and other.name != name:
                raise OmnivecError(
                    ErrorCode.MODEL_CONFLICT,
                    f"model {other.name!r} already serves the space {space_id!r} (the same weights); use it instead of loading them twice",
                )

    async def _load(self, entry: LoadedModel, bundle: ModelBundle) -> None:
        def progress(tower: str) -> None:
            entry.progress = f"opening and probing the {tower} tower"

        entry.progress = "opening towers"
        try:
            service = await asyncio.to_thread(self.loader, bundle, self.settings, self.metrics, progress)
        except Exception as exc:  # a bundle that fails its probe on this host, a broken ONNX file, ...
            entry.state, entry.progress = "failed", "failed"
            entry.error = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, (BundleError, OmnivecError)) else str(exc)
            entry.load_s = round(time.time() - entry.started_at, 3)
            log.error("loading model %r from %s failed: %s", entry.name, entry.bundle_path, entry.error)
            return
        entry.ready(service)
        if entry.default:
            self.default_name = entry.name
        log.info("model %r ready in %.1f s (space %s)", entry.name, entry.load_s, entry.space_id)

    # -- unloading ------------------------------------------------------------------------------

    async def unload(self, name: str) -> LoadedModel:
        """Refuse new work for the model, wait for the work holding it, close it; 409 for the default or a busy model."""
        entry = self.entry(name)
        if entry.default:
            raise OmnivecError(ErrorCode.MODEL_CONFLICT, f"{name!r} is the default model and cannot be unloaded; restart the server with another first --bundle")
        if name in self.busy:
            raise OmnivecError(ErrorCode.MODEL_CONFLICT, f"{name!r} cannot be unloaded now: {self.busy[name]}")
        if entry.state == "unloading":
            raise OmnivecError(ErrorCode.MODEL_CONFLICT, f"{name!r} is already being unloaded")
        if entry.state == "loading":
            raise OmnivecError(ErrorCode.MODEL_CONFLICT, f"{name!r} is still loading ({entry.progress}); unload it once GET /v1/models/{name} says ready or failed")
        if entry.state == "failed":  # nothing to drain or close: forget it
            self._models.pop(name, None)
            return entry
        entry.state, entry.progress = "unloading", "draining"
        if entry.in_flight:
            await entry._idle.wait()
        self._models.pop(name, None)
        if entry.service is not None and entry.owned:
            await entry.service.close()
        entry.progress = "unloaded"
        return entry

    async def close(self) -> None:
        """Close every model this registry loaded (shutdown)."""
        for entry in list(self._models.values()):
            if entry.task is not None and not entry.task.done():
                with contextlib.suppress(Exception):
                    await entry.task  # a load in progress finishes on its thread; then it is closed
            if entry.service is not None and entry.owned:
                await entry.service.close()
        self._models.clear()
