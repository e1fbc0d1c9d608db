"""Vector index layer: the `IndexStore` protocol and its engines.

`EdgeIndexStore` (embedded Qdrant Edge, the default) and `QdrantIndexStore` (a Qdrant server via
qdrant-client) are imported lazily so that using one engine never loads the other's library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import CollectionExists, CollectionNotFound, DimensionMismatch, IndexStoreError, InvalidFilter, InvalidRequest
from .store import CollectionInfo, Hit, IndexStore, Point
from .vector_options import VectorOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings
    from .edge import EdgeIndexStore
    from .qdrant import QdrantIndexStore

__all__ = [
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "DimensionMismatch",
    "EdgeIndexStore",
    "Hit",
    "IndexStore",
    "IndexStoreError",
    "InvalidFilter",
    "InvalidRequest",
    "Point",
    "QdrantIndexStore",
    "VectorOptions",
    "open_store",
]


def open_store(settings: "Settings") -> IndexStore:
    """The engine the settings choose: Edge under data_dir/index (default), or a Qdrant server."""
    index = settings.index
    if index.engine == "qdrant":
        if not index.qdrant_url:
            raise IndexStoreError("index.engine is 'qdrant' but no Qdrant URL is set: set OMNIVEC_QDRANT_URL=http://host:6333")
        from .qdrant import QdrantIndexStore

        return QdrantIndexStore.from_settings(
            index.qdrant_url, index.qdrant_api_key, index.prefer_grpc, index.timeout_s, shards=index.shards, replication_factor=index.replication_factor,
            hnsw_ef=index.hnsw_ef,
        )
    from .edge import EdgeIndexStore

    return EdgeIndexStore(
        settings.index_dir, search_threads=index.search_threads, indexing_threads=index.search_threads, documents_dir=settings.data_dir, hnsw_ef=index.hnsw_ef
    )


def __getattr__(name: str) -> Any:
    if name == "EdgeIndexStore":
        from .edge import EdgeIndexStore

        return EdgeIndexStore
    if name == "QdrantIndexStore":
        from .qdrant import QdrantIndexStore

        return QdrantIndexStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
