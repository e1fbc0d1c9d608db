"""The index layer's contract: one `IndexStore` protocol that every vector engine implements.

The API layer only talks to this protocol, so the embedded engine (Qdrant Edge, `edge.py`) and the
scale-out engine (a Qdrant server through qdrant-client, `qdrant.py`) are interchangeable. Both share
the id mapping, payload hygiene and validation helpers defined here so that they behave identically;
`tests/server/index/test_store_contract.py` runs one suite over both to keep it that way.

Conventions every engine follows:

* Similarity is cosine; higher scores are better. Vectors are stored L2-normalised (Qdrant does this
  for the cosine distance), so `retrieve(..., with_vectors=True)` returns the unit vector.
* Point ids are arbitrary API strings. Qdrant only accepts uint64 or UUID ids, so each string is
  mapped deterministically to a UUID (`point_uuid`) and the original string is kept in the payload
  under the reserved key `_omnivec_id`. Keys starting with `_omnivec` are reserved: they are dropped
  from incoming payloads and stripped from every payload handed back.
* Filters are plain dicts in Qdrant's own JSON filter shape, validated and translated by `filters.py`
  (a `filters.FilterNode` parsed already is accepted too, so a request parses its filter once).

About 400 lines on purpose: the protocol, its data types and the validation helpers both engines
share are the contract, read together.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import DimensionMismatch, InvalidRequest
from .vector_options import VectorOptions

if TYPE_CHECKING:  # pragma: no cover
    from .media import MediaStore

__all__ = [
    "CollectionInfo",
    "Point",
    "Hit",
    "IndexStore",
    "CollectionMeta",
    "DocumentStore",
    "RESERVED_PREFIX",
    "ID_KEY",
    "ID_NAMESPACE",
    "point_uuid",
    "strip_reserved",
    "validate_collection_name",
    "is_collection_name",
    "validate_search_args",
    "validate_scroll_args",
    "point_from_record",
    "points_in_request_order",
    "MAX_SCROLL_LIMIT",
    "validate_payload_index",
    "PAYLOAD_INDEX_SCHEMAS",
    "prepare_points",
    "prepare_query_vector",
    "utc_now_iso",
]

# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection was created with: `space_id`/`model` say which embedding space its vectors
    live in, so clients cannot mix vectors from incompatible models by accident. Engines cache it:
    reading it costs no engine call on the request path."""

    name: str
    dim: int
    space_id: str
    model: str
    created_at: str
    extra: dict = field(default_factory=dict)
    vectors: VectorOptions = field(default_factory=VectorOptions)  # quantisation, placement, HNSW shape


@dataclass
class CollectionInfo:
    """What the API reports about a collection: its metadata and its exact point count."""

    name: str
    dim: int
    space_id: str
    model: str
    count: int
    created_at: str
    extra: dict = field(default_factory=dict)
    vectors: VectorOptions = field(default_factory=VectorOptions)

    @classmethod
    def of(cls, meta: CollectionMeta, count: int) -> "CollectionInfo":
        return cls(meta.name, meta.dim, meta.space_id, meta.model, count, meta.created_at, dict(meta.extra), meta.vectors)


@dataclass
class Point:
    """One stored item: the caller's string id, its embedding and a JSON payload."""

    id: str
    vector: np.ndarray | list[float]
    payload: dict = field(default_factory=dict)


@dataclass
class Hit:
    """One search result; `payload` is None when the caller did not ask for payloads."""

    id: str
    score: float
    payload: dict | None
    vector: list[float] | None = None


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class IndexStore(Protocol):
    """A vector index holding named collections of (string id, vector, payload) points.

    Implementations must be safe to call from several worker threads at once.
    """

    def create_collection(
        self, name: str, dim: int, space_id: str, model: str, extra: dict | None = None, vectors: VectorOptions | None = None
    ) -> CollectionInfo:
        """Create an empty cosine collection stored and searched as `vectors` says (default: float32,
        in RAM, the engine's HNSW shape); raises CollectionExists / InvalidRequest (options this engine
        cannot honour)."""
        ...

    def get_collection(self, name: str) -> CollectionInfo:
        """Describe one collection (count is exact); raises CollectionNotFound."""
        ...

    def describe(self, name: str) -> CollectionMeta:
        """The collection's metadata without counting its points (cached; a collection deleted or
        recreated behind the server's back is noticed); raises CollectionNotFound."""
        ...

    def resolve(self, name: str) -> str:
        """The physical collection `name` stands for now (aliases.py); handing it to the other methods pins a
        request to that collection even if the name is pointed elsewhere meanwhile."""
        ...

    def aliases(self) -> dict[str, str]:
        """Every name that points at another physical collection."""
        ...

    def point_name(self, name: str, physical: str, old_name: str | None = None) -> None:
        """Point `name` at the collection `physical` in one step (a re-embed's swap); the collection the name stood
        for stays, reachable as `old_name`."""
        ...

    def documents(self, kind: str) -> "DocumentStore":
        """Small named JSON documents (label sets) kept where this index lives, so every server
        sharing the index sees the same ones."""
        ...

    def media(self) -> "MediaStore":
        """Where items' kept media (previews, small originals) live: beside this index, so every
        server sharing the index serves the same media. One instance per store."""
        ...

    def list_collections(self) -> list[CollectionInfo]:
        """Describe every collection, sorted by name."""
        ...

    def delete_collection(self, name: str) -> None:
        """Drop the collection and its data; raises CollectionNotFound."""
        ...

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points by id (last one wins within a batch); raises DimensionMismatch."""
        ...

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        """Fetch points by id in request order; missing ids are simply absent."""
        ...

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` already stored, so bulk indexing can resume where it stopped."""
        ...

    def delete_points(
        self, name: str, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids and/or filter (both given: ids that match the filter); returns how many
        points were deleted (exact for Edge, best effort for a shared Qdrant server)."""
        ...

    def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        top_k: int = 10,
        offset: int = 0,
        filter: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
        with_payload: bool = True,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """Nearest neighbours by cosine similarity, best first; `score_threshold` keeps scores >= it."""
        ...

    def scroll(
        self, name: str, limit: int = 100, cursor: str | None = None, filter: Mapping[str, Any] | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        """One page of stored points (matching the filter) in a stable engine order, and the cursor
        of the next page (None after the last). Every point shows up once across the pages."""
        ...

    def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        """Exact number of points (matching the filter, if given)."""
        ...

    def create_payload_index(self, name: str, field: str, schema: str) -> None:
        """Index a payload field (schema: "keyword", "integer", "float" or "bool") so that filters
        on it stay fast; idempotent. Create it before optimize() so HNSW gets filter-aware links."""
        ...

    def optimize(self, name: str) -> None:
        """Build/refresh the ANN index after bulk inserts without blocking concurrent searches."""
        ...

    def close(self) -> None:
        """Flush and release resources; the store must not be used afterwards."""
        ...


class DocumentStore(Protocol):
    """Named JSON objects of one kind, stored beside the index (create-or-replace, read, delete, list)."""

    def put(self, name: str, document: dict) -> None: ...

    def get(self, name: str) -> dict | None: ...

    def delete(self, name: str) -> bool: ...

    def list(self) -> list[dict]: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers: ids, payloads, validation
# ---------------------------------------------------------------------------------------------

RESERVED_PREFIX = "_omnivec"
ID_KEY = "_omnivec_id"
# Fixed forever: changing it would orphan every stored point.
ID_NAMESPACE = uuid.UUID("3b0f6f5e-6d0c-5a3e-9a51-6f6d6e697665")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def point_uuid(point_id: str) -> str:
    """Map an API string id to the UUID the engine stores, deterministically.

    A canonical (lower-case, hyphenated) UUID string is used as is, so ids that already are UUIDs
    stay readable in the engine; every other string, including upper-case or brace-wrapped UUIDs,
    goes through uuid5 so that two different strings never share a point.
    """
    if not isinstance(point_id, str):
        raise InvalidRequest(f"point ids must be strings, got {type(point_id).__name__}: {point_id!r}")
    if not point_id:
        raise InvalidRequest("point ids must be non-empty strings")
    if len(point_id) == 36:
        try:
            if str(uuid.UUID(point_id)) == point_id:
                return point_id
        except ValueError:
            pass
    return str(uuid.uuid5(ID_NAMESPACE, point_id))


def strip_reserved(payload: Mapping[str, Any] | None) -> dict:
    """Copy of `payload` without the store's reserved keys."""
    if not payload:
        return {}
    return {k: v for k, v in payload.items() if not k.startswith(RESERVED_PREFIX)}


def is_collection_name(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME_RE.match(name))


def validate_collection_name(name: str) -> str:
    """Names double as directory names (Edge) and Qdrant collection names, so keep them portable."""
    if not is_collection_name(name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: use 1-128 characters from letters, digits, '_', '-', "
            "'.', starting with a letter or digit (e.g. 'photos_2024')"
        )
    return name


def validate_search_args(top_k: int, offset: int) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidRequest(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidRequest(f"offset must be a non-negative integer, got {offset!r}")


MAX_SCROLL_LIMIT = 1000


def validate_scroll_args(limit: int, cursor: str | None) -> str | None:
    """Check a page request; the cursor is the engine's id of the page's first point (a UUID)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SCROLL_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_SCROLL_LIMIT}, got {limit!r}")
    if cursor is None:
        return None
    try:
        return str(uuid.UUID(str(cursor)))
    except ValueError:
        raise InvalidRequest(f"cursor {cursor!r} is not one this server gave out; pass the next_cursor of the previous page") from None


def point_from_record(record: Any, with_vectors: bool, fallback_id: str | None = None) -> Point:
    """A Point from an engine record (Edge and qdrant-client records have the same fields); its API
    id is the one kept in the payload, else `fallback_id`, else the engine's UUID."""
    vector = list(map(float, record.vector)) if with_vectors and record.vector is not None else []
    point_id = (record.payload or {}).get(ID_KEY) or fallback_id or str(record.id)
    return Point(id=point_id, vector=vector, payload=strip_reserved(record.payload))


def points_in_request_order(records: Sequence[Any], ids: Sequence[str], with_vectors: bool) -> list[Point]:
    """Records retrieved for `ids` as Points in request order: each id once, missing ids absent."""
    uids = {point_uuid(i): i for i in ids}
    by_id = {}
    for record in records:
        point = point_from_record(record, with_vectors, fallback_id=uids.get(str(record.id)))
        by_id[point.id] = point
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


PAYLOAD_INDEX_SCHEMAS = ("keyword", "integer", "float", "bool")


def validate_payload_index(field: str, schema: str) -> tuple[str, str]:
    """Check a payload-index request; returns (field, schema) with schema lower-cased."""
    if not isinstance(field, str) or not field.strip():
        raise InvalidRequest("the payload field to index must be a non-empty string such as \"tags\" or \"meta.color\"")
    if field.startswith(RESERVED_PREFIX):
        raise InvalidRequest(f"payload field {field!r} is reserved for the store's bookkeeping")
    kind = schema.lower() if isinstance(schema, str) else schema
    if kind not in PAYLOAD_INDEX_SCHEMAS:
        raise InvalidRequest(f"unsupported payload index schema {schema!r}; use one of {list(PAYLOAD_INDEX_SCHEMAS)}")
    return field, kind


def _as_vector(vector: Any, dim: int) -> list[float]:
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1:
        raise InvalidRequest(f"a vector must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise DimensionMismatch(dim, int(arr.shape[0]))
    if not np.all(np.isfinite(arr)):
        raise InvalidRequest("vector contains NaN or infinite values; re-embed the input")
    if not float(np.dot(arr, arr)) > 0.0:
        raise InvalidRequest("vector is all zeros, which has no cosine direction; re-embed the input")
    return arr.tolist()


def prepare_query_vector(vector: Any, dim: int) -> list[float]:
    """Validate a query vector against the collection dimension; returns a float list."""
    return _as_vector(vector, dim)


def prepare_points(points: Sequence[Point], dim: int) -> list[tuple[str, str, list[float], dict]]:
    """Validate a whole batch before writing any of it; returns (uuid, id, vector, payload) tuples.

    Duplicate ids within the batch collapse to the last occurrence, as a sequential upsert would.
    The stored payload is the user payload minus reserved keys, plus `_omnivec_id`.
    """
    out: dict[str, tuple[str, str, list[float], dict]] = {}
    for p in points:
        if not isinstance(p, Point):
            raise InvalidRequest(f"expected Point objects, got {type(p).__name__}")
        pid = p.id
        uid = point_uuid(pid)
        vec = _as_vector(p.vector, dim)
        if p.payload is not None and not isinstance(p.payload, Mapping):
            raise InvalidRequest(f"payload of point {pid!r} must be a JSON object (dict)")
        payload = strip_reserved(p.payload)
        payload[ID_KEY] = pid
        out.pop(uid, None)  # keep batch order of the last occurrence
        out[uid] = (uid, pid, vec, payload)
    return list(out.values())


def finite_or_none(x: float | None) -> float | None:
    """Score thresholds must be real numbers; None disables the threshold."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise InvalidRequest(f"score_threshold must be a finite number, got {x!r}")
    return float(x)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
