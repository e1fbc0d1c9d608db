"""Cross-modal search: any query (text, image, audio, URL, stored item, raw vector) against a collection.

All modalities share one space, so text->audio, audio->image and audio->audio work like text->image.
Text, image, audio and URL queries are embedded by the loaded model of the collection's space (409,
naming the model to load, when none is). Item-id and raw-vector queries involve no model and work
on any collection of the right dimension. An item-id query leaves the item itself out of the
results ("more like this": the caller already has it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ..errors import ErrorCode, OmnivecError
from ..index.filters import FilterNode, HasId, MatchValue, parse_filter
from ..index.store import IndexStore
from .collections import run_store
from .dimensions import fit_to_collection
from .inputs import InputResolver, RawInput, embed_all
from .models import ModelRegistry
from .payloads import MODALITY_KEY, split_payload

QueryKind = Literal["text", "image", "audio", "url", "id", "vector"]


@dataclass
class SearchQuery:
    kind: QueryKind
    value: Any  # str, bytes (an uploaded image/audio file) or a list of floats (vector)
    label: str | None = None  # how errors name it; default "query.<kind>"


@dataclass
class SearchOptions:
    top_k: int = 10
    offset: int = 0
    score_threshold: float | None = None
    filter: Mapping[str, Any] | None = None
    modality: str | None = None
    with_payload: bool = True


@dataclass
class SearchHit:
    id: str
    score: float
    modality: str | None
    payload: dict | None


def combined_filter(user: Mapping[str, Any] | None, modality: str | None, exclude_id: str | None = None) -> FilterNode | None:
    """The user's Qdrant filter AND the `modality` shorthand AND NOT the query item, parsed once
    (before any model work; errors name the user's own paths) and handed to the index as is."""
    node = parse_filter(user)
    must = ((node,) if node is not None else ()) + ((MatchValue(MODALITY_KEY, modality),) if modality else ())
    must_not = (HasId((exclude_id,)),) if exclude_id else ()
    if not must_not and len(must) == 1 and node is not None:
        return node
    return FilterNode(must=must, must_not=must_not) if must or must_not else None


class SearchService:
    """One search: check the collection (cached metadata), get the query vector, ask the index; each part once."""

    def __init__(self, store: IndexStore, models: ModelRegistry, resolver: InputResolver) -> None:
        self.store = store
        self.models = models
        self.resolver = resolver

    async def query_vector(self, name: str, query: SearchQuery, shown_as: str | None = None) -> Sequence[float] | np.ndarray:
        """The vector to search with: looked up by id, given, or embedded by the collection's model; a model-length
        vector is cut to a prefix collection's length (`shown_as`: the name messages use)."""
        if query.kind == "id":  # a stored item's vector already has the collection's length
            points = await run_store(self.store.retrieve, name, [query.value], with_vectors=True)
            if not points:
                raise OmnivecError(ErrorCode.ITEM_NOT_FOUND, f"collection {shown_as or name!r} has no item {query.value!r}")
            return points[0].vector
        meta = await run_store(self.store.describe, name)
        if query.kind == "vector":
            return fit_to_collection(query.value, meta)
        model = self.models.for_collection(dataclasses.replace(meta, name=shown_as or meta.name), "search")
        label = query.label or f"query.{query.kind}"
        resolved = await self.resolver.resolve_all([RawInput(query.kind, query.value, label)])  # type: ignore[arg-type]
        async with self.models.lease(model) as embedding:
            return fit_to_collection((await embed_all(embedding, resolved))[0], meta)

    async def search(self, name: str, query: SearchQuery, options: SearchOptions) -> list[SearchHit]:
        flt = combined_filter(options.filter, options.modality, query.value if query.kind == "id" else None)
        physical = await run_store(self.store.resolve, name)  # one collection from start to end, even if a re-embed swaps the name meanwhile
        vector = await self.query_vector(physical, query, shown_as=name)
        try:
            hits = await run_store(
                self.store.search,
                physical,
                vector,
                top_k=options.top_k,
                offset=options.offset,
                filter=flt,
                score_threshold=options.score_threshold,
                with_payload=True,
            )
        except OmnivecError as exc:
            if exc.code == ErrorCode.DIMENSION_MISMATCH and query.kind == "vector":
                exc.message = f"query.vector: {exc.message}"
            raise
        out = []
        for hit in hits:
            modality, payload = split_payload(hit.payload)
            out.append(SearchHit(hit.id, hit.score, modality, payload if options.with_payload else None))
        return out
