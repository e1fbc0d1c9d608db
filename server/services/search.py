"""Cross-modal search: any query (text, image, audio, URL, stored item, raw vector) against a collection.

All modalities share one space, so text->audio, audio->image and audio->audio work like text->image.
Text, image, audio and URL queries are embedded by this server's model, so they need the collection to
be in the model's space (409 otherwise). Item-id and raw-vector queries involve no model and work
on any collection of the right dimension. An item-id query leaves the item itself out of the
results ("more like this": the caller already has it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ..errors import ErrorCode, OmnivecError
from ..index.filters import FilterNode, HasId, MatchValue, parse_filter
from ..index.store import IndexStore
from .collections import MODALITY_KEY, check_space, run_store, split_payload
from .dimensions import fit_to_collection
from .embedding import EmbeddingService
from .inputs import InputResolver, RawInput, embed_all

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

    def __init__(self, store: IndexStore, embedding: EmbeddingService, resolver: InputResolver) -> None:
        self.store = store
        self.embedding = embedding
        self.resolver = resolver

    async def query_vector(self, name: str, query: SearchQuery) -> Sequence[float] | np.ndarray:
        """The vector to search with: embedded, looked up by id, or given."""
        if query.kind == "vector":
            return query.value
        if query.kind == "id":
            points = await run_store(self.store.retrieve, name, [query.value], with_vectors=True)
            if not points:
                raise OmnivecError(ErrorCode.ITEM_NOT_FOUND, f"collection {name!r} has no item {query.value!r}")
            return points[0].vector
        check_space(await run_store(self.store.describe, name), self.embedding.manifest, "search")
        label = query.label or f"query.{query.kind}"
        resolved = await self.resolver.resolve_all([RawInput(query.kind, query.value, label)])  # type: ignore[arg-type]
        return (await embed_all(self.embedding, resolved))[0]

    async def search(self, name: str, query: SearchQuery, options: SearchOptions) -> list[SearchHit]:
        flt = combined_filter(options.filter, options.modality, query.value if query.kind == "id" else None)
        vector = await self.query_vector(name, query)
        if query.kind != "id":  # a stored item's vector already has the collection's length
            vector = fit_to_collection(vector, await run_store(self.store.describe, name))
        try:
            hits = await run_store(
                self.store.search,
                name,
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
