"""Collections and their items: the index store, the loaded model and the inputs put together.

Framework-free. Two rules hold everything together:

* A collection records the embedding space (`space_id`) of the model that created it. Anything
  that produces vectors for a collection (adding items, text/image/audio/URL queries) uses the loaded
  model of that space (`ModelRegistry.for_space`), and is refused with 409 space_mismatch, naming the
  model to load, when none is loaded: cosine between vectors of two different models is meaningless,
  and mixing them silently ruins the index.
* A stored point's payload is the user's payload plus one key the API owns, `modality`
  ("text" | "image" | "audio"). So users filter on their own fields and on `modality` with the same
  Qdrant filter JSON (`{"key": "modality", "match": {"value": "image"}}`); `modality` (and the
  store's `_omnivec*` keys) cannot be set by users.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping, TypeVar

from ..bundle import Manifest
from ..errors import ErrorCode, OmnivecError
from ..ids import content_id
from ..index.store import CollectionInfo, CollectionMeta, IndexStore, Point
from ..index.vector_options import VectorOptions
from .dimensions import MODEL_DIM_KEY, check_dimensions, fit_to_collection, nested_warning
from .index_builder import IndexBuilder
from .inputs import InputResolver, RawInput, Resolved, embed_each
from .models import LoadedModel, ModelRegistry
from .payloads import MODALITY_KEY

if TYPE_CHECKING:  # pragma: no cover
    from .media_keeper import KeptMedia, MediaKeeper

DIMENSIONS_WARNING_KEY = "dimensions_warning"  # collection metadata: why its prefix length may lose quality
KEEP_MEDIA_KEY = "keep_media"  # collection metadata: keep previews/originals of its items (absent: yes)
PAYLOAD_INDEXES_KEY = "payload_indexes"  # collection metadata: its payload indexes, so a re-embed's new collection gets them too
T = TypeVar("T")


@dataclass
class ItemSpec:
    """One item of an add request: where it was in the request, its input, id and payload."""

    index: int
    input: RawInput
    id: str | None = None
    payload: dict = field(default_factory=dict)


@dataclass
class ItemError:
    index: int
    code: str
    message: str

    @classmethod
    def of(cls, index: int, exc: OmnivecError) -> "ItemError":
        return cls(index, exc.code.value, exc.message)


@dataclass
class AddResult:
    ids: list[str | None]  # per request item; None where it failed
    errors: list[ItemError]

    @property
    def indexed(self) -> int:
        return sum(i is not None for i in self.ids)


async def run_store(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call off the event loop (the index layer raises the error table's errors itself)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def prefix_metadata(dim: int, manifest: Manifest) -> dict:
    """Collection metadata saying how its vectors relate to the model's: the model's full dim, and why a prefix may lose quality."""
    warning = nested_warning(dim, manifest)
    return {MODEL_DIM_KEY: manifest.embed_dim, **({DIMENSIONS_WARNING_KEY: warning} if warning else {})}


@dataclass
class Mirror:
    """Where a running re-embed writes: items added to or deleted from the collection meanwhile go there too."""

    target: str  # the physical collection being built
    model: LoadedModel


class WriteGate:
    """Writes to one collection share it; a re-embed's swap takes it alone for a moment, so no write
    starts on the old collection and ends after the name moved."""

    def __init__(self) -> None:
        self._writers = 0
        self._swapping = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._swapping)
            self._writers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._swapping)
            self._swapping = True
            await self._cond.wait_for(lambda: self._writers == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._swapping = False
                self._cond.notify_all()




class CollectionService:
    """Create/list/delete collections; add, fetch and delete their items."""

    def __init__(
        self, store: IndexStore, models: ModelRegistry, resolver: InputResolver, builder: IndexBuilder | None = None, media: "MediaKeeper | None" = None
    ) -> None:
        self.store = store
        self.models = models
        self.resolver = resolver
        self.builder = builder or IndexBuilder(store, optimize_after_points=0)
        self.media = media  # None: no media kept at all (unit tests of other parts)
        self.mirrors: dict[str, Mirror] = {}  # collection name -> the re-embed building its successor
        self._gates: dict[str, WriteGate] = {}

    def gate(self, name: str) -> WriteGate:
        return self._gates.setdefault(name, WriteGate())

    def served(self, space_id: str) -> bool:
        """Whether a loaded model embeds into this space (else adding and model queries are refused)."""
        return any(m.space_id == space_id for m in self.models.ready())

    # -- collections ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        description: str = "",
        extra: dict | None = None,
        payload_indexes: dict[str, str] | None = None,
        keep_media: bool = True,
        model: str | None = None,
        vectors: VectorOptions | None = None,
        dimensions: int | None = None,
    ) -> CollectionInfo:
        """A collection in the space of `model` (default: the default model); `modality` is always keyword-indexed.
        `dimensions` stores (and searches) a renormalised prefix of the model's vectors; `vectors` says how they are kept."""
        entry = self.models.get(model)
        manifest = entry.service.manifest  # type: ignore[union-attr]
        dim = check_dimensions(dimensions, manifest)
        indexes = {MODALITY_KEY: "keyword", **(payload_indexes or {})}
        meta = {
            "description": description,
            "extra": dict(extra or {}),
            KEEP_MEDIA_KEY: keep_media,
            PAYLOAD_INDEXES_KEY: indexes,
            **prefix_metadata(dim, manifest),
        }
        info = await run_store(self.store.create_collection, name, dim, manifest.space_id, entry.name, meta, vectors)
        for key, schema in indexes.items():
            await run_store(self.store.create_payload_index, name, key, schema)
        return info

    @staticmethod
    def warnings(info: CollectionInfo | CollectionMeta) -> list[str]:
        """What a client should know about how the collection keeps its vectors (a prefix its model was not trained for)."""
        warning = (info.extra or {}).get(DIMENSIONS_WARNING_KEY)
        return [str(warning)] if warning else []

    async def list(self) -> list[CollectionInfo]:
        return await run_store(self.store.list_collections)

    async def get(self, name: str) -> CollectionInfo:
        return await run_store(self.store.get_collection, name)

    async def delete(self, name: str) -> None:
        if name in self.mirrors:
            raise OmnivecError(
                ErrorCode.REEMBED_CONFLICT, f"collection {name!r} is being re-embedded; delete it once GET /v1/collections/{name}/reembed says done or failed"
            )
        await run_store(self.store.delete_collection, name)
        self.builder.forget(name)
        if self.media is not None:
            await run_store(self.media.store.drop, name)

    async def optimize(self, name: str) -> bool:
        """Start a background index build now; False when one is already running."""
        await self.get(name)
        return self.builder.start(name)

    async def compatible(self, name: str, action: str) -> tuple[CollectionMeta, LoadedModel]:
        """The collection's (cached) metadata and the loaded model of its space (409 when none is)."""
        meta = await run_store(self.store.describe, name)
        return meta, self.models.for_collection(meta, action)

    # -- items ----------------------------------------------------------------------------------

    async def add_items(self, name: str, entries: list[ItemSpec | ItemError]) -> AddResult:
        """Embed and upsert items; a bad item is reported in `errors` and the others are stored (and, while a
        re-embed builds the collection's successor, embedded with its model and stored there too)."""
        async with self.gate(name).write():
            return await self._add_items(name, entries)

    async def _add_items(self, name: str, entries: list[ItemSpec | ItemError]) -> AddResult:
        info, model = await self.compatible(name, "add items to")
        result = AddResult(ids=[None] * len(entries), errors=[e for e in entries if isinstance(e, ItemError)])
        specs = [e for e in entries if isinstance(e, ItemSpec)]
        resolved = await self.resolver.resolve_each([s.input for s in specs])
        ready = [(s, r) for s, r in zip(specs, resolved) if isinstance(r, Resolved)]
        result.errors += [ItemError.of(s.index, r) for s, r in zip(specs, resolved) if isinstance(r, OmnivecError)]
        making = self._start_media(info, [(s.input, r) for s, r in ready])  # previews are made while the model embeds
        async with self.models.lease(model) as embedding:
            vectors = await embed_each(embedding, [r for _, r in ready])
        made = await making if making is not None else [None] * len(ready)
        points: list[tuple[int, Point]] = []
        kept: list[tuple[str, KeptMedia | None]] = []
        inputs: dict[str, Resolved] = {}
        for (spec, res), vector, media in zip(ready, vectors, made):
            if isinstance(vector, OmnivecError):
                result.errors.append(ItemError.of(spec.index, vector))
                continue
            point_id = spec.id or content_id(res.modality, res.value)
            points.append((spec.index, Point(point_id, fit_to_collection(vector, info), {**spec.payload, MODALITY_KEY: res.modality})))
            kept.append((point_id, media))
            inputs[point_id] = res
        if points:
            await run_store(self.store.upsert, name, [p for _, p in points])
            self.builder.note_added(name, len(points))
            if (mirror := self.mirrors.get(name)) is not None:
                await self._mirror_add(mirror, list({p.id: p for _, p in points}.values()), inputs)
            if self.media is not None:
                await run_store(self.media.put_all, name, kept)
        for index, point in points:
            result.ids[index] = point.id
        result.errors.sort(key=lambda e: e.index)
        return result

    async def _mirror_add(self, mirror: Mirror, points: list[Point], inputs: dict[str, Resolved]) -> None:
        """The same items embedded by the re-embed's model, into the collection it builds (a failure here is
        repaired by the re-embed's final check, which embeds whatever the new collection lacks)."""
        async with self.models.lease(mirror.model) as embedding:
            vectors = await embed_each(embedding, [inputs[p.id] for p in points])
        target = await run_store(self.store.describe, mirror.target)
        ok = [Point(p.id, fit_to_collection(v, target), p.payload) for p, v in zip(points, vectors) if not isinstance(v, OmnivecError)]
        if ok:
            await run_store(self.store.upsert, mirror.target, ok)

    async def get_item(self, name: str, item_id: str, with_vector: bool = False) -> Point:
        points = await run_store(self.store.retrieve, name, [item_id], with_vectors=with_vector)
        if not points:
            raise OmnivecError(ErrorCode.ITEM_NOT_FOUND, f"collection {name!r} has no item {item_id!r}")
        return points[0]

    async def scroll(
        self, name: str, limit: int, cursor: str | None, filter: Mapping[str, Any] | None, with_vectors: bool
    ) -> tuple[list[Point], str | None]:
        """One page of stored items and the next page's cursor (None after the last)."""
        return await run_store(self.store.scroll, name, limit, cursor, filter, with_vectors)

    async def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        return await run_store(self.store.existing_ids, name, ids)

    async def delete_items(self, name: str, ids: list[str] | None, filter: Mapping[str, Any] | None) -> int:
        """Delete by ids, by filter, or both (ids that match the filter); returns how many went."""
        if ids is None and not filter:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, 'give "ids": [...] and/or a non-empty "filter"; to drop everything, delete the collection')
        async with self.gate(name).write():
            if (mirror := self.mirrors.get(name)) is not None:
                await run_store(self.store.delete_points, mirror.target, ids, filter or None)
            return await self._delete_items(name, ids, filter)

    async def _delete_items(self, name: str, ids: list[str] | None, filter: Mapping[str, Any] | None) -> int:
        if self.media is None:
            return await run_store(self.store.delete_points, name, ids, filter or None)
        # Media is keyed by item id: find the ids a filter deletes first, then forget the media of those gone.
        candidates = ids if ids is not None else await self._matching_ids(name, filter)
        deleted = await run_store(self.store.delete_points, name, ids, filter or None)
        remaining = await self.existing_ids(name, candidates) if candidates else set()
        await run_store(self.media.store.delete, name, [i for i in candidates if i not in remaining])
        return deleted

    async def _matching_ids(self, name: str, filter: Mapping[str, Any] | None) -> list[str]:
        ids: list[str] = []
        cursor = None
        while True:
            page, cursor = await self.scroll(name, 1000, cursor, filter, False)
            ids += [p.id for p in page]
            if cursor is None:
                return ids

    def _start_media(self, info: CollectionMeta, inputs: list[tuple[RawInput, Resolved]]) -> "asyncio.Future[list[KeptMedia | None]] | None":
        """Start making the items' previews on a worker thread; None when nothing is kept (this server keeps no
        media, or the collection was created with keep_media=false: its items then get None, which also removes
        what an earlier version of a replaced item kept)."""
        if self.media is None or not (info.extra or {}).get(KEEP_MEDIA_KEY, True):
            return None
        return asyncio.ensure_future(asyncio.to_thread(self.media.make_all, inputs))
