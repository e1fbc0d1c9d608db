"""Re-embedding a collection into another model's space, built aside and swapped in under its name.

A job reads every item of the collection with its kept source (the kept original, its URL, or its
text; the kept preview when the original was too large to keep), embeds it with the target model
and writes it, with the same id and payload, into a new physical collection `<name>.r<n>` in the
target space. Items added or deleted while it runs go to both collections (`CollectionService`
mirrors writes). At the end, with writes to the collection held for a moment, the new collection
is checked against the old one (ids the old one lost are deleted, ids it gained are embedded) and
the name is pointed at it in one step (`IndexStore.point_name`): a search runs on one collection
from start to end, so none fails or mixes spaces. The old collection stays, as `<name>.r<n-1>`
(`<name>.r0` for the original), until it is deleted.

Progress is a document in the index's document store, written after every page: a job interrupted
by a restart carries on from its last page when the server starts again with the model loaded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import ErrorCode, OmnivecError
from ..index.aliases import Physical
from ..index.errors import CollectionNotFound
from ..index.store import IndexStore, Point
from .collections import DIMENSIONS_WARNING_KEY, PAYLOAD_INDEXES_KEY, CollectionService, Mirror, prefix_metadata, run_store
from .dimensions import MODEL_DIM_KEY, fit_to_collection
from .inputs import InputResolver, RawInput, Resolved, embed_each
from .models import LoadedModel, ModelRegistry
from .payloads import MODALITY_KEY

log = logging.getLogger("omnivec.reembed")

JobState = Literal["running", "done", "failed"]
MAX_LISTED_ERRORS = 1000


@dataclass
class ReembedJob:
    """One re-embed, as persisted (`doc`) and reported (GET .../reembed)."""

    name: str
    model: str
    space_id: str
    source: str  # physical collection read
    target: str  # physical collection written, then pointed at
    old_name: str  # what the source is reachable as after the swap
    state: JobState = "running"
    done: int = 0
    total: int = 0
    errors: list[dict] = field(default_factory=list)
    from_preview: int = 0  # items re-embedded from their kept preview (the original was over media.original_max_bytes)
    cursor: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    message: str | None = None

    def doc(self) -> dict:
        return asdict(self)


async def _source(media, collection: str, point: Point) -> tuple[RawInput | None, bool, str]:
    """The item's kept source as an input: (input or None, taken from the preview, why none)."""
    modality = (point.payload or {}).get(MODALITY_KEY)
    kept = await run_store(media.store.get, collection, point.id, True) if media is not None else None
    label = f"item {point.id!r}"
    if kept is None:
        return None, False, "nothing of this item was kept (collection created with keep_media=false, or indexed before media was kept); add it again"
    if kept.url:
        return RawInput("url", kept.url, label), False, ""
    kind = kept.modality or modality
    if kept.original is not None:
        return RawInput(kind, kept.original.decode("utf-8") if kind == "text" else kept.original, label), False, ""  # type: ignore[arg-type]
    if kept.preview is not None:
        return RawInput(kind, kept.preview.decode("utf-8") if kind == "text" else kept.preview, label), True, ""  # type: ignore[arg-type]
    return None, False, "no kept original, URL or preview; add it again"


class Reembedder:
    """Starts, runs, resumes and reports re-embed jobs (one per collection at a time)."""

    def __init__(self, store: IndexStore, collections: CollectionService, models: ModelRegistry, resolver: InputResolver, page: int = 64) -> None:
        self.store = store
        self.collections = collections
        self.models = models
        self.resolver = resolver
        self.page = page
        self.docs = store.documents("reembeds")
        self.jobs: dict[str, ReembedJob] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    # -- reading --------------------------------------------------------------------------------

    async def status(self, name: str) -> ReembedJob:
        job = self.jobs.get(name)
        if job is None:
            doc = await run_store(self.docs.get, name)
            if doc is None:
                raise OmnivecError(ErrorCode.NOT_FOUND, f"collection {name!r} has no re-embed; start one with POST /v1/collections/{name}/reembed")
            job = ReembedJob(**doc)
        return job

    # -- starting -------------------------------------------------------------------------------

    async def start(self, name: str, model: str) -> ReembedJob:
        """202: a new job, or the interrupted one for the same model carried on; 409 when one runs."""
        if name in self.tasks and not self.tasks[name].done():
            raise OmnivecError(ErrorCode.REEMBED_CONFLICT, f"collection {name!r} is already being re-embedded; follow it at GET /v1/collections/{name}/reembed")
        entry = self.models.get(model)
        source = await run_store(self.store.resolve, name)
        meta = await run_store(self.store.describe, name)
        if meta.space_id == entry.space_id:
            raise OmnivecError(ErrorCode.REEMBED_CONFLICT, f"collection {name!r} is already in the space of {model!r} ({entry.space_id}); nothing to re-embed")
        previous = await run_store(self.docs.get, name)
        if previous and previous["state"] != "done" and previous["model"] == model and previous["source"] == source and await self._exists(previous["target"]):
            job = ReembedJob(**{**previous, "state": "running", "message": None, "finished_at": None})
        else:
            target = await self._free_target(name)
            old_name = source if source != name else f"{name}.r0"
            job = ReembedJob(name=name, model=model, space_id=entry.space_id or "", source=source, target=target, old_name=old_name)
            await self._create_target(job, meta, entry)
        self._launch(job, entry)
        return job

    async def resume_all(self) -> None:
        """At startup: carry on every job a restart interrupted (or say which model it waits for)."""
        for doc in await run_store(self.docs.list):
            if doc.get("state") != "running":
                continue
            job = ReembedJob(**doc)
            try:
                entry = self.models.get(job.model)
            except OmnivecError:
                job.state, job.message = "failed", f"interrupted by a restart and {job.model!r} is not loaded; load it and POST .../reembed again to carry on"
                await run_store(self.docs.put, job.name, job.doc())
                continue
            log.info("resuming the re-embed of %r into %r at %d/%d", job.name, job.model, job.done, job.total)
            self._launch(job, entry)

    def _launch(self, job: ReembedJob, entry: LoadedModel) -> None:
        self.jobs[job.name] = job
        self.models.busy[job.model] = f"re-embedding collection {job.name!r} (GET /v1/collections/{job.name}/reembed)"
        self.collections.mirrors[job.name] = Mirror(Physical(job.target), entry)
        self.tasks[job.name] = asyncio.create_task(self._run(job, entry))

    async def _exists(self, physical: str) -> bool:
        try:
            await run_store(self.store.describe, Physical(physical))
            return True
        except CollectionNotFound:
            return False

    async def _free_target(self, name: str) -> str:
        taken = {int(m.group(1)) for n in [*await run_store(self.store.aliases), *[c.name for c in await run_store(self.store.list_collections)]]
                 if (m := re.fullmatch(re.escape(name) + r"\.r(\d+)", n))}  # fmt: skip
        n = max(taken, default=0) + 1
        while await self._exists(f"{name}.r{n}"):
            n += 1
        return f"{name}.r{n}"

    async def _create_target(self, job: ReembedJob, meta, entry: LoadedModel) -> None:
        manifest = entry.manifest
        assert manifest is not None
        model_dim = int(meta.extra.get(MODEL_DIM_KEY) or meta.dim)
        dim = meta.dim if meta.dim < model_dim and meta.dim <= manifest.embed_dim else manifest.embed_dim  # a prefix collection stays one
        extra = {k: v for k, v in meta.extra.items() if k != DIMENSIONS_WARNING_KEY} | prefix_metadata(dim, manifest)
        await run_store(self.store.create_collection, Physical(job.target), dim, manifest.space_id, entry.name, extra, meta.vectors)
        indexes = {MODALITY_KEY: "keyword", **(meta.extra.get(PAYLOAD_INDEXES_KEY) or {})}  # collections from before it was kept: modality only
        for key, schema in indexes.items():
            await run_store(self.store.create_payload_index, Physical(job.target), key, schema)
        await run_store(self.docs.put, job.name, job.doc())

    # -- running --------------------------------------------------------------------------------

    async def _run(self, job: ReembedJob, entry: LoadedModel) -> None:
        target, source = Physical(job.target), Physical(job.source)
        try:
            job.total = await run_store(self.store.count, source)
            while True:
                page, cursor = await run_store(self.store.scroll, source, self.page, job.cursor, None, False)
                await self._embed_into(job, entry, target, page)
                job.done += len(page)
                job.cursor = cursor
                await run_store(self.docs.put, job.name, job.doc())
                if cursor is None:
                    break
            await self._swap(job, entry, target)
            job.state = "done"
        except asyncio.CancelledError:  # shutdown: the document says where to carry on
            await asyncio.shield(run_store(self.docs.put, job.name, job.doc()))
            raise
        except Exception as exc:  # noqa: BLE001 - reported on the job, the server goes on
            log.error("re-embedding %r failed", job.name, exc_info=exc)
            job.state, job.message = "failed", f"{exc.__class__.__name__}: {getattr(exc, 'message', exc)}"
        finally:
            self.collections.mirrors.pop(job.name, None)
            self.models.busy.pop(job.model, None)
        job.finished_at = time.time()
        await run_store(self.docs.put, job.name, job.doc())

    async def _embed_into(self, job: ReembedJob, entry: LoadedModel, target: str, page: list[Point]) -> None:
        sources = await asyncio.gather(*(_source(self.collections.media, job.name, p) for p in page))
        work: list[tuple[Point, RawInput]] = []
        for point, (raw, from_preview, why) in zip(page, sources):
            if raw is None:
                self._error(job, point.id, ErrorCode.MEDIA_NOT_FOUND.value, why)
            else:
                work.append((point, raw))
                job.from_preview += from_preview
        resolved = await self.resolver.resolve_each([raw for _, raw in work])
        ready = [(p, r) for p, r in zip(work, resolved) if isinstance(r, Resolved)]
        for (point, _), r in zip(work, resolved):
            if isinstance(r, OmnivecError):
                self._error(job, point.id, r.code.value, r.message)
        async with self.models.lease(entry) as service:
            vectors = await embed_each(service, [r for _, r in ready])
        points = []
        for ((point, _), _r), vector in zip(ready, vectors):
            if isinstance(vector, OmnivecError):
                self._error(job, point.id, vector.code.value, vector.message)
            else:
                points.append(Point(point.id, vector, dict(point.payload)))
        if points:
            meta = await run_store(self.store.describe, target)
            points = [Point(p.id, fit_to_collection(p.vector, meta), p.payload) for p in points]
            await run_store(self.store.upsert, target, points)

    @staticmethod
    def _error(job: ReembedJob, item_id: str, code: str, message: str) -> None:
        if len(job.errors) < MAX_LISTED_ERRORS:
            job.errors.append({"id": item_id, "code": code, "message": message})

    async def _swap(self, job: ReembedJob, entry: LoadedModel, target: str) -> None:
        """With writes held: make the new collection hold exactly the old one's ids, then point the name at it."""
        async with self.collections.gate(job.name).exclusive():
            source = Physical(job.source)
            old_ids, new_ids = await self._ids(source), await self._ids(target)
            gone = sorted(new_ids - old_ids)
            if gone:
                await run_store(self.store.delete_points, target, gone, None)
            failed = {e["id"] for e in job.errors}
            missing = sorted(old_ids - new_ids - failed)
            for start in range(0, len(missing), self.page):
                page = await run_store(self.store.retrieve, source, missing[start : start + self.page])
                await self._embed_into(job, entry, target, page)
            final_ids = (new_ids - set(gone)) | set(missing)
            job.errors = [e for e in job.errors if e["id"] not in final_ids or e["id"] in failed - new_ids]  # a mirrored add may have beaten its media
            await run_store(self.store.point_name, job.name, job.target, job.old_name)
            job.total = len(old_ids)
            job.done = job.total
        self.collections.builder.start(job.name)  # the new collection was written without ANN builds: build one now, in the background
        log.info("collection %r now in %r's space (%d items, %d errors); the old one is %r", job.name, job.model, job.total, len(job.errors), job.old_name)

    async def _ids(self, physical: str) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            page, cursor = await run_store(self.store.scroll, physical, 1000, cursor, None, False)
            ids.update(p.id for p in page)
            if cursor is None:
                return ids

    async def close(self) -> None:
        """Stop running jobs (shutdown); their documents say where to carry on."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

