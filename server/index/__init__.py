"""Vector index layer: the `IndexStore` protocol and its engines.

`EdgeIndexStore` (embedded Qdrant Edge, the default) and `QdrantIndexStore` (a Qdrant server via
qdrant-client) are imported lazily so that using one engine never loads the other's library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .store import (
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    DimensionMismatch,
    Hit,
    IndexStore,
    IndexStoreError,
    InvalidFilter,
    InvalidRequest,
    Point,
)

if TYPE_CHECKING:  # pragma: no cover
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
]


def __getattr__(name: str) -> Any:
    if name == "EdgeIndexStore":
        from .edge import EdgeIndexStore

        return EdgeIndexStore
    if name == "QdrantIndexStore":
        from .qdrant import QdrantIndexStore

        return QdrantIndexStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
