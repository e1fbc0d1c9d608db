"""`QdrantIndexStore`: the scale-out engine, a Qdrant server reached through qdrant-client.

Also works with qdrant-client's local mode (`QdrantClient(":memory:")` or `path=`), which the tests
use; local mode is a pure-Python brute-force engine with no HNSW, fine for tests and small data only.

Collection metadata (dim, space_id, model, created_at, extra) lives in Qdrant's own collection
metadata (`create_collection(..., metadata=...)`, supported by qdrant-client >= 1.16 and Qdrant
server >= 1.16) under the single key `"omnivec"`. Collections without that key were not created by
omnivec and are invisible to this store (not listed, `CollectionNotFound` on access), so a shared
Qdrant server's other collections are never touched.

Other servers may delete or recreate a collection on the same Qdrant, so the cached metadata
expires after `meta_ttl_s` and is dropped whenever an engine call on the collection fails.

Validation, filter parsing, result mapping and error translation live in `base.EngineStore`; this
module has only the engine calls, the filter objects and the classification of client errors.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from .base import PAYLOAD_ID_ONLY, EngineStore, Prepared
from .qdrant_hidden import HiddenCollection
from .qdrant_media import QdrantMediaStore
from .errors import CollectionExists, CollectionNotFound, IndexFailed, IndexStoreError, IndexTimeout, IndexUnavailable, InvalidRequest
from .store import CollectionMeta, point_uuid
from .vector_options import INT8_QUANTILE, VectorOptions

__all__ = ["QdrantIndexStore", "QdrantDocuments"]

META_KEY = "omnivec"
_UPSERT_BATCH = 256
_RETRIEVE_BATCH = 1024


class QdrantFilters:
    """`FilterBuilder` for qdrant-client's filter models."""

    def match_value(self, key: str, value: str | int | bool) -> Any:
        return m.FieldCondition(key=key, match=m.MatchValue(value=value))

    def match_any(self, key: str, values: list) -> Any:
        return m.FieldCondition(key=key, match=m.MatchAny(any=values))

    def match_except(self, key: str, values: list) -> Any:
        return m.FieldCondition(key=key, match=m.MatchExcept(**{"except": values}))

    def range(self, key: str, gte: Any, gt: Any, lte: Any, lt: Any) -> Any:
        return m.FieldCondition(key=key, range=m.Range(gte=gte, gt=gt, lte=lte, lt=lt))

    def is_empty(self, key: str) -> Any:
        return m.IsEmptyCondition(is_empty=m.PayloadField(key=key))

    def is_null(self, key: str) -> Any:
        return m.IsNullCondition(is_null=m.PayloadField(key=key))

    def has_id(self, uuids: list[str]) -> Any:
        return m.HasIdCondition(has_id=uuids)

    def nested(self, key: str, filter: Any) -> Any:
        return m.NestedCondition(nested=m.Nested(key=key, filter=filter))

    def min_should(self, conditions: list, min_count: int) -> Any:
        return m.MinShould(conditions=conditions, min_count=min_count)

    def filter(self, must: Any, should: Any, must_not: Any, min_should: Any) -> Any:
        return m.Filter(must=must, should=should, must_not=must_not, min_should=min_should)


def is_local(client: QdrantClient) -> bool:
    """qdrant-client's in-process mode (":memory:" or a path), told from the client's own init options."""
    options = getattr(client, "init_options", None) or {}
    return options.get("location") == ":memory:" or options.get("path") is not None


class QdrantIndexStore(EngineStore):
    """`IndexStore` over a `QdrantClient` (remote server, or local mode for tests).

    Thread safety: a remote client is safe to share between threads. qdrant-client's local mode is
    not documented as thread-safe, so with it every call is serialised by one lock.
    """

    filter_builder = QdrantFilters()
    meta_ttl_s: float | None = 5.0

    def __init__(
        self,
        client: QdrantClient,
        *,
        close_client: bool = True,
        timeout: int | None = None,
        local: bool | None = None,
        shards: int | None = None,
        replication_factor: int | None = None,
        hnsw_ef: int | None = None,
    ):
        """shards / replication_factor: set on every new collection of a Qdrant cluster (None: the server's default).
        hnsw_ef: the search beam of collections that set none (None: the server's default)."""
        super().__init__()
        self._hnsw_ef = hnsw_ef
        self._placement = {k: v for k, v in (("shard_number", shards), ("replication_factor", replication_factor)) if v is not None}
        self._client = client
        self._close_client = close_client
        self._timeout = timeout
        self._local = is_local(client) if local is None else local
        self._serial = threading.RLock() if self._local else None
        self._create_lock = threading.Lock()
        self._media: QdrantMediaStore | None = None

    @classmethod
    def from_settings(
        cls,
        url: str,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: float | None = 10.0,
        *,
        shards: int | None = None,
        replication_factor: int | None = None,
        hnsw_ef: int | None = None,
    ) -> "QdrantIndexStore":
        """Build from settings: `url` is a server URL (http://host:6333), or ":memory:" for tests."""
        t = None if timeout is None else int(max(1, round(timeout)))
        if url == ":memory:":
            return cls(QdrantClient(":memory:"), close_client=True, timeout=t, local=True, hnsw_ef=hnsw_ef)
        client = QdrantClient(url=url, api_key=api_key or None, prefer_grpc=prefer_grpc, timeout=t)
        return cls(client, close_client=True, timeout=t, local=False, shards=shards, replication_factor=replication_factor, hnsw_ef=hnsw_ef)

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> QdrantClient:
        """The qdrant-client this engine talks through (tests use it to act behind the server's back)."""
        return self._client

    @contextlib.contextmanager
    def serialized(self) -> Iterator[None]:
        """Hold while calling the client: qdrant-client's local mode is not thread-safe (a no-op against a server)."""
        if self._serial is None:
            yield
        else:
            with self._serial:
                yield

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self.serialized():
            return getattr(self._client, method)(*args, **kwargs)

    def _exists(self, name: str) -> bool | None:
        """Whether the collection exists; None when Qdrant cannot tell us."""
        try:
            return bool(self._call("collection_exists", name))
        except Exception:
            return None

    def _engine_error(self, exc: Exception, name: str | None) -> IndexStoreError:
        """Timeouts -> 504, unreachable -> 503, a vanished collection -> 404, anything else -> 500."""
        text = f"{exc.__class__.__name__}: {str(exc)[:300]}"
        cause = getattr(exc, "source", None) or exc.__cause__ or exc.__context__  # qdrant-client wraps httpx errors
        if isinstance(exc, httpx.TimeoutException) or isinstance(cause, httpx.TimeoutException) or _grpc_status(exc) == "DEADLINE_EXCEEDED":
            return IndexTimeout(f"Qdrant did not answer in time ({text}); retry, or raise OMNIVEC_INDEX__TIMEOUT_S")
        unreachable = isinstance(exc, (ResponseHandlingException, httpx.TransportError, ConnectionError)) or _grpc_status(exc) == "UNAVAILABLE"
        if unreachable or (isinstance(exc, UnexpectedResponse) and exc.status_code in (502, 503, 504)):
            return IndexUnavailable(f"cannot reach Qdrant ({text}); check that it is running and reachable, then retry")
        if name is not None and self._exists(name) is False:
            return CollectionNotFound(name)
        if name is not None and "dimension" in str(exc).lower():  # recreated elsewhere with another dim
            return InvalidRequest(f"vector dimension rejected by Qdrant (was collection {name!r} recreated elsewhere?): {exc}")
        return IndexFailed(f"Qdrant refused the operation{f' on collection {name!r}' if name else ''} ({text}); the server logged the details")

    def documents(self, kind: str) -> "QdrantDocuments":
        return QdrantDocuments(self, f"_omnivec_{kind}")

    def media(self) -> QdrantMediaStore:
        if self._media is None:
            self._media = QdrantMediaStore(self)
        return self._media

    # -- collections ----------------------------------------------------------------------------

    def _engine_check_options(self, vectors: VectorOptions) -> None:
        """qdrant-client's local mode searches every vector exactly, in RAM, and drops quantisation and
        HNSW settings: refuse them rather than report a configuration that is not there."""
        if self._local and (vectors.quantized or vectors.on_disk or vectors.hnsw_m or vectors.hnsw_ef_construct or vectors.hnsw_ef):
            raise InvalidRequest(
                "this index engine is qdrant-client's local mode (exact in-memory search, for tests), which cannot quantise, keep "
                "vectors on disk or shape an HNSW graph; drop quantization/on_disk/hnsw, or use the embedded engine "
                "(OMNIVEC_INDEX__ENGINE=edge) or a Qdrant server (OMNIVEC_QDRANT_URL)"
            )

    def _engine_create(self, meta: CollectionMeta) -> None:
        stored = {
            "dim": meta.dim, "space_id": meta.space_id, "model": meta.model, "created_at": meta.created_at, "extra": meta.extra, "format": 1,
            "vectors": meta.vectors.to_json(),
        }
        with self._create_lock:
            if self._call("collection_exists", meta.name):
                raise CollectionExists(meta.name)
            try:
                self._call(
                    "create_collection", meta.name, **qdrant_collection_config(meta.dim, meta.vectors), **self._placement,
                    metadata={META_KEY: stored}, timeout=self._timeout,
                )
            except Exception as exc:  # another process won the race
                if "already exists" in str(exc).lower() or "409" in str(exc):
                    raise CollectionExists(meta.name) from exc
                raise

    def _engine_describe(self, name: str) -> CollectionMeta:
        try:
            info = self._call("get_collection", name)
        except (ResponseHandlingException, httpx.TransportError):
            raise
        except Exception as exc:
            if self._exists(name) is False:
                raise CollectionNotFound(name) from exc
            raise
        meta = (info.config.metadata or {}).get(META_KEY)
        if not isinstance(meta, dict):
            raise CollectionNotFound(name)
        return CollectionMeta(
            name, int(meta["dim"]), str(meta.get("space_id", "")), str(meta.get("model", "")), str(meta.get("created_at", "")),
            dict(meta.get("extra") or {}), VectorOptions.from_json(meta.get("vectors")),
        )

    def _engine_names(self) -> list[str]:
        return [c.name for c in self._call("get_collections").collections]

    def _engine_drop(self, name: str) -> None:
        if not self._call("delete_collection", name, timeout=self._timeout):
            raise CollectionNotFound(name)

    # -- points ---------------------------------------------------------------------------------

    def _engine_upsert(self, name: str, points: Prepared) -> None:
        for i in range(0, len(points), _UPSERT_BATCH):
            batch = [m.PointStruct(id=uid, vector=vec, payload=payload) for uid, _pid, vec, payload in points[i : i + _UPSERT_BATCH]]
            self._call("upsert", name, points=batch, wait=True)

    def _engine_retrieve(self, name: str, uids: list[str], with_payload: bool, with_vectors: bool) -> list[Any]:
        records: list[Any] = []
        for i in range(0, len(uids), _RETRIEVE_BATCH):
            records += self._call("retrieve", name, ids=uids[i : i + _RETRIEVE_BATCH], with_payload=with_payload, with_vectors=with_vectors)
        return records

    def _engine_delete(self, name: str, flt: Any) -> int:
        n = int(self._call("count", name, count_filter=flt, exact=True).count)
        if n:
            self._call("delete", name, points_selector=m.FilterSelector(filter=flt), wait=True)
        return n

    def _engine_query(self, name: str, vector: list[float], top_k: int, offset: int, flt: Any, threshold: float | None, with_payload: bool, with_vectors: bool) -> list[Any]:
        return self._call(
            "query_points",
            name,
            query=vector,
            limit=top_k,
            offset=offset or None,
            query_filter=flt,
            score_threshold=threshold,
            with_payload=True if with_payload else m.PayloadSelectorInclude(include=PAYLOAD_ID_ONLY),
            with_vectors=with_vectors,
            search_params=qdrant_search_params(self.describe(name).vectors, None if self._local else self._hnsw_ef),
        ).points

    def _engine_scroll(self, name: str, limit: int, start: str | None, flt: Any, with_vectors: bool) -> tuple[list[Any], Any]:
        return self._call("scroll", name, scroll_filter=flt, limit=limit, offset=start, with_payload=True, with_vectors=with_vectors)

    def _engine_count(self, name: str, flt: Any) -> int:
        return int(self._call("count", name, count_filter=flt, exact=True).count)

    def _engine_payload_index(self, name: str, field: str, kind: str) -> None:
        """Index a payload field on the server; skipped in local mode, where indexes have no effect."""
        if not self._local:
            self._call("create_payload_index", name, field, field_schema=m.PayloadSchemaType(kind), wait=True)

    def _engine_optimize(self, name: str) -> None:
        """No-op by design: a Qdrant server builds HNSW in its own background optimizer (searches
        keep working meanwhile), and qdrant-client's local mode has no ANN index at all."""

    def _engine_close(self) -> None:
        if self._close_client:
            self._call("close")


def qdrant_collection_config(dim: int, vectors: VectorOptions) -> dict[str, Any]:
    """`create_collection` keyword arguments for a collection's vector options (a Qdrant server honours
    them all; the quantised copy is kept in RAM, the float vectors and graph on disk with on_disk)."""
    on_disk = True if vectors.on_disk else None
    config: dict[str, Any] = {"vectors_config": m.VectorParams(size=dim, distance=m.Distance.COSINE, on_disk=on_disk)}
    if vectors.on_disk or vectors.hnsw_m or vectors.hnsw_ef_construct:
        config["hnsw_config"] = m.HnswConfigDiff(m=vectors.hnsw_m, ef_construct=vectors.hnsw_ef_construct, on_disk=on_disk)
    if vectors.quantization == "int8":
        config["quantization_config"] = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True))
    elif vectors.quantization == "binary":
        config["quantization_config"] = m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
    return config


def qdrant_search_params(vectors: VectorOptions, default_ef: int | None = None) -> Any:
    """The collection's beam width (else `default_ef`); quantised collections oversample on the compact copy and
    rescore with the float vectors; None when neither applies (the server's defaults)."""
    quant = m.QuantizationSearchParams(rescore=True, oversampling=vectors.effective_oversampling) if vectors.quantized else None
    ef = vectors.hnsw_ef or default_ef
    if quant is None and not ef:
        return None
    return m.SearchParams(hnsw_ef=ef, quantization=quant)


def _grpc_status(exc: Exception) -> str | None:
    """The gRPC status name of an RpcError (prefer_grpc), without importing grpc."""
    code = getattr(exc, "code", None)
    if callable(code):
        with contextlib.suppress(Exception):
            return str(getattr(code(), "name", ""))
    return None


class QdrantDocuments:
    """`DocumentStore` as points of one Qdrant collection, shared by every server on that Qdrant.

    Each point has a constant 1-d vector (Qdrant needs one) and the document as its payload; its
    id is derived from the name, so a put replaces. The collection is a `HiddenCollection`.
    """

    def __init__(self, index: QdrantIndexStore, collection: str) -> None:
        self._hidden = HiddenCollection(index, collection)
        self._do = self._hidden.call

    def put(self, name: str, document: dict) -> None:
        self._do("upsert", [m.PointStruct(id=point_uuid(name), vector=[1.0], payload=dict(document))], wait=True)

    def get(self, name: str) -> dict | None:
        found = self._do("retrieve", [point_uuid(name)], with_payload=True)
        return dict(found[0].payload or {}) if found else None

    def delete(self, name: str) -> bool:
        if self.get(name) is None:
            return False
        self._do("delete", m.PointIdsList(points=[point_uuid(name)]), wait=True)
        return True

    def list(self) -> list[dict]:
        docs: list[dict] = []
        offset = None
        while True:
            points, offset = self._do("scroll", limit=256, offset=offset, with_payload=True)
            docs += [dict(p.payload or {}) for p in points]
            if offset is None:
                return docs

