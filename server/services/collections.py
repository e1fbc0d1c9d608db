"""Collections and their items: the index store, the loaded model and the inputs put together.

Framework-free. Two rules hold everything together:

* A collection records the embedding space (`space_id`) of the model that created it. Anything
  that makes this server's model produce vectors for a collection (adding items, text/image/audio/URL
  queries) is refused with 409 space_mismatch when the spaces differ: cosine between vectors of
  two different models is meaningless, and mixing them silently ruins the index.
* A stored point's payload is the user's payload plus one key the API owns, `modality`
  ("text" | "image" | "audio"). So users filter on their own fields and on `modality` with the same
  Qdrant filter JSON (`{"key": "modality", "match": {"value": "image"}}`); `modality` (and the
  store's `_omnivec*` keys) cannot be set by users.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from ..bundle import Manifest
from ..errors import ErrorCode, OmnivecError
from ..ids import content_id
from ..index.store import RESERVED_PREFIX, CollectionInfo, CollectionMeta, IndexStore, Point
from ..index.vector_options import VectorOptions
from .dimensions import MODEL_DIM_KEY, check_dimensions, fit_to_collection, nested_warning
from .embedding import EmbeddingService
from .index_builder import IndexBuilder
from .inputs import InputResolver, RawInput, Resolved, embed_each

if TYPE_CHECKING:  # pragma: no cover
    from .media_keeper import KeptMedia, MediaKeeper

MODALITY_KEY = "modality"
DIMENSIONS_WARNING_KEY = "dimensions_warning"  # collection metadata: why its prefix length may lose quality
KEEP_MEDIA_KEY = "keep_media"  # collection metadata: keep previews/originals of its items (absent: yes)
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


def check_space(meta: CollectionMeta, manifest: Manifest, action: str) -> None:
    """409 space_mismatch unless this server's model embeds into the collection's space."""
    if meta.space_id != manifest.space_id:
        raise OmnivecError(
            ErrorCode.SPACE_MISMATCH,
            f"cannot {action} collection {meta.name!r}: it holds vectors of space {meta.space_id!r} (model {meta.model!r}) "
            f"but this server's model {manifest.model_name!r} embeds into space {manifest.space_id!r}, and vectors of different spaces "
            f"are not comparable. Create a new collection for this model, or serve the collection's model ({meta.model!r}).",
        )


def user_payload(payload: Any, label: str) -> dict:
    """Check a client payload: a JSON object whose keys the API does not reserve."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{label}.payload must be a JSON object, got {type(payload).__name__}")
    for key in payload:
        if key == MODALITY_KEY or str(key).startswith(RESERVED_PREFIX):
            raise OmnivecError(
                ErrorCode.INVALID_REQUEST,
                f"{label}.payload key {key!r} is reserved (the API stores the item's modality under {MODALITY_KEY!r}); rename it",
            )
    return dict(payload)


def split_payload(stored: dict | None) -> tuple[str | None, dict]:
    """Stored payload -> (modality, the user's payload)."""
    payload = dict(stored or {})
    return payload.pop(MODALITY_KEY, None), payload


class CollectionService:
    """Create/list/delete collections; add, fetch and delete their items."""

    def __init__(
        self, store: IndexStore, embedding: EmbeddingService, resolver: InputResolver, builder: IndexBuilder | None = None, media: "MediaKeeper | None" = None
    ) -> None:
        self.store = store
        self.embedding = embedding
        self.resolver = resolver
        self.builder = builder or IndexBuilder(store, optimize_after_points=0)
        self.media = media  # None: no media kept at all (unit tests of other parts)

    @property
    def space_id(self) -> str:
        return self.embedding.manifest.space_id

    @property
    def model(self) -> str:
        return self.embedding.manifest.model_name

    # -- collections ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        description: str = "",
        extra: dict | None = None,
        payload_indexes: dict[str, str] | None = None,
        keep_media: bool = True,
        vectors: VectorOptions | None = None,
        dimensions: int | None = None,
    ) -> CollectionInfo:
        """A collection in this model's space; `modality` is always given a keyword index. `dimensions` stores
        (and searches) a renormalised prefix of the model's vectors; `vectors` says how they are kept."""
        manifest = self.embedding.manifest
        dim = check_dimensions(dimensions, manifest)
        meta = {"description": description, "extra": dict(extra or {}), KEEP_MEDIA_KEY: keep_media, MODEL_DIM_KEY: manifest.embed_dim}
        warning = nested_warning(dim, manifest)
        if warning:
            meta[DIMENSIONS_WARNING_KEY] = warning  # kept: the collection may outlive this model on this server
        info = await run_store(self.store.create_collection, name, dim, manifest.space_id, manifest.model_name, meta, vectors)
        indexes = {MODALITY_KEY: "keyword", **(payload_indexes or {})}
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
        await run_store(self.store.delete_collection, name)
        self.builder.forget(name)
        if self.media is not None:
            await run_store(self.media.store.drop, name)

    async def optimize(self, name: str) -> bool:
        """Start a background index build now; False when one is already running."""
        await self.get(name)
        return self.builder.start(name)

    async def compatible(self, name: str, action: str) -> CollectionMeta:
        """The collection's (cached) metadata, after checking that this server's model may write or query it."""
        meta = await run_store(self.store.describe, name)
        check_space(meta, self.embedding.manifest, action)
        return meta

    # -- items ----------------------------------------------------------------------------------

    async def add_items(self, name: str, entries: list[ItemSpec | ItemError]) -> AddResult:
        """Embed and upsert items; a bad item is reported in `errors` and the others are stored."""
        info = await self.compatible(name, "add items to")
        result = AddResult(ids=[None] * len(entries), errors=[e for e in entries if isinstance(e, ItemError)])
        specs = [e for e in entries if isinstance(e, ItemSpec)]
        resolved = await self.resolver.resolve_each([s.input for s in specs])
        ready = [(s, r) for s, r in zip(specs, resolved) if isinstance(r, Resolved)]
        result.errors += [ItemError.of(s.index, r) for s, r in zip(specs, resolved) if isinstance(r, OmnivecError)]
        making = self._start_media(info, [(s.input, r) for s, r in ready])  # previews are made while the model embeds
        vectors = await embed_each(self.embedding, [r for _, r in ready])
        made = await making if making is not None else [None] * len(ready)
        points: list[tuple[int, Point]] = []
        kept: list[tuple[str, KeptMedia | None]] = []
        for (spec, res), vector, media in zip(ready, vectors, made):
            if isinstance(vector, OmnivecError):
                result.errors.append(ItemError.of(spec.index, vector))
                continue
            point_id = spec.id or content_id(res.modality, res.value)
            points.append((spec.index, Point(point_id, fit_to_collection(vector, info), {**spec.payload, MODALITY_KEY: res.modality})))
            kept.append((point_id, media))
        if points:
            await run_store(self.store.upsert, name, [p for _, p in points])
            self.builder.note_added(name, len(points))
            if self.media is not None:
                await run_store(self.media.put_all, name, kept)
        for index, point in points:
            result.ids[index] = point.id
        result.errors.sort(key=lambda e: e.index)
        return result

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

    def _start_media(self, info: CollectionInfo, inputs: list[tuple[RawInput, Resolved]]) -> "asyncio.Future[list[KeptMedia | None]] | None":
        """Start making the items' previews on a worker thread; None when nothing is kept (this server keeps no
        media, or the collection was created with keep_media=false: its items then get None, which also removes
        what an earlier version of a replaced item kept)."""
        if self.media is None or not (info.extra or {}).get(KEEP_MEDIA_KEY, True):
            return None
        return asyncio.ensure_future(asyncio.to_thread(self.media.make_all, inputs))
