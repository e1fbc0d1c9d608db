"""`QdrantIndexStore`: the scale-out engine, a Qdrant server reached through qdrant-client.

Also works with qdrant-client's local mode (`QdrantClient(":memory:")` or `path=`), which the tests
use; local mode is a pure-Python brute-force engine with no HNSW, fine for tests and small data only.

Collection metadata (dim, space_id, model, created_at, extra) lives in Qdrant's own collection
metadata (`create_collection(..., metadata=...)`, supported by qdrant-client >= 1.16 and Qdrant
server >= 1.16) under the single key `"omnivec"`. Collections without that key were not created by
omnivec and are invisible to this store (not listed, `CollectionNotFound` on access), so a shared
Qdrant server's other collections are never touched.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from .filters import parse_filter, restrict_to_ids, to_qdrant_filter
from .store import (
    ID_KEY,
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    Hit,
    IndexStoreError,
    InvalidRequest,
    Point,
    finite_or_none,
    point_from_record,
    points_in_request_order,
    point_uuid,
    prepare_points,
    prepare_query_vector,
    strip_reserved,
    utc_now_iso,
    validate_collection_name,
    validate_payload_index,
    validate_scroll_args,
    validate_search_args,
)

__all__ = ["QdrantIndexStore"]

META_KEY = "omnivec"
_UPSERT_BATCH = 256
_RETRIEVE_BATCH = 1024


class QdrantIndexStore:
    """`IndexStore` over a `QdrantClient` (remote server, or local mode for tests).

    Thread safety: a remote client is safe to share between threads. qdrant-client's local mode is
    not documented as thread-safe, so with it every call is serialised by one lock.
    """

    def __init__(self, client: QdrantClient, *, close_client: bool = True, timeout: int | None = None):
        self._client = client
        self._close_client = close_client
        self._timeout = timeout
        self._local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._serial = threading.RLock() if self._local else None
        self._create_lock = threading.Lock()
        self._dims: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls,
        url: str,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: float | None = 10.0,
    ) -> "QdrantIndexStore":
        """Build from settings: `url` is a server URL (http://host:6333), or ":memory:" for tests."""
        t = None if timeout is None else int(max(1, round(timeout)))
        if url == ":memory:":
            client = QdrantClient(":memory:")
        else:
            client = QdrantClient(url=url, api_key=api_key or None, prefer_grpc=prefer_grpc, timeout=t)
        return cls(client, close_client=True, timeout=t)

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> QdrantClient:
        """The qdrant-client this engine talks through (shared with the label-set store)."""
        return self._client

    @contextlib.contextmanager
    def serialized(self) -> Iterator[None]:
        """Hold while calling the client: qdrant-client's local mode is not thread-safe (a no-op against a server)."""
        if self._serial is None:
            yield
        else:
            with self._serial:
                yield

    def _meta(self, name: str) -> tuple[Any, dict]:
        """(collection info, omnivec metadata) or CollectionNotFound."""
        validate_collection_name(name)
        with self.serialized():
            try:
                if not self._client.collection_exists(name):
                    raise CollectionNotFound(name)
                info = self._client.get_collection(name)
            except IndexStoreError:
                raise
            except Exception as exc:  # deleted between the two calls, or server trouble
                if not self._exists(name):
                    raise CollectionNotFound(name) from exc
                raise
        meta = (info.config.metadata or {}).get(META_KEY)
        if not isinstance(meta, dict):
            raise CollectionNotFound(name)
        return info, meta

    def _exists(self, name: str) -> bool:
        try:
            with self.serialized():
                return bool(self._client.collection_exists(name))
        except Exception:
            return False

    def _dim(self, name: str) -> int:
        dim = self._dims.get(name)
        if dim is None:
            _, meta = self._meta(name)
            dim = int(meta["dim"])
            self._dims[name] = dim
        return dim

    def _call(self, name: str, fn, *args, **kwargs):
        """Run a client call; map "collection vanished" and dimension errors to our exceptions."""
        try:
            with self.serialized():
                return fn(*args, **kwargs)
        except IndexStoreError:
            raise
        except Exception as exc:
            if not self._exists(name):
                self._dims.pop(name, None)
                raise CollectionNotFound(name) from exc
            if "dimension" in str(exc).lower():  # collection was recreated elsewhere with another dim
                self._dims.pop(name, None)
                raise InvalidRequest(f"vector dimension rejected by Qdrant: {exc}") from exc
            raise

    def _info(self, name: str, meta: dict) -> CollectionInfo:
        count = self._call(name, self._client.count, name, exact=True).count
        return CollectionInfo(
            name=name,
            dim=int(meta["dim"]),
            space_id=str(meta.get("space_id", "")),
            model=str(meta.get("model", "")),
            count=int(count),
            created_at=str(meta.get("created_at", "")),
            extra=dict(meta.get("extra") or {}),
        )

    # -- collections ----------------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, space_id: str, model: str, extra: dict | None = None
    ) -> CollectionInfo:
        validate_collection_name(name)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
            raise InvalidRequest(f"dim must be an integer between 1 and 65536, got {dim!r}")
        meta = {
            "dim": dim,
            "space_id": space_id,
            "model": model,
            "created_at": utc_now_iso(),
            "extra": dict(extra or {}),
            "format": 1,
        }
        with self._create_lock, self.serialized():
            if self._client.collection_exists(name):
                raise CollectionExists(name)
            try:
                self._client.create_collection(
                    name,
                    vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                    metadata={META_KEY: meta},
                    timeout=self._timeout,
                )
            except Exception as exc:  # another process won the race
                if "already exists" in str(exc).lower() or "409" in str(exc):
                    raise CollectionExists(name) from exc
                raise
        self._dims[name] = dim
        return CollectionInfo(name, dim, space_id, model, 0, meta["created_at"], meta["extra"])

    def get_collection(self, name: str) -> CollectionInfo:
        _, meta = self._meta(name)
        return self._info(name, meta)

    def list_collections(self) -> list[CollectionInfo]:
        with self.serialized():
            names = sorted(c.name for c in self._client.get_collections().collections)
        out = []
        for n in names:
            try:
                out.append(self.get_collection(n))
            except (CollectionNotFound, InvalidRequest):  # not ours, odd name, or deleted meanwhile
                continue
        return out

    def delete_collection(self, name: str) -> None:
        self._meta(name)  # CollectionNotFound, and never drop a collection omnivec did not create
        with self.serialized():
            ok = self._client.delete_collection(name, timeout=self._timeout)
        self._dims.pop(name, None)
        if not ok:
            raise CollectionNotFound(name)

    # -- points ---------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        dim = self._dim(name)
        prepared = prepare_points(points, dim)
        for i in range(0, len(prepared), _UPSERT_BATCH):
            batch = [
                m.PointStruct(id=uid, vector=vec, payload=payload)
                for uid, _pid, vec, payload in prepared[i : i + _UPSERT_BATCH]
            ]
            self._call(name, self._client.upsert, name, points=batch, wait=True)

    def _retrieve(self, name: str, ids: Sequence[str], with_payload, with_vectors: bool):
        self._dim(name)
        uids = {point_uuid(i): i for i in ids}
        records = []
        keys = list(uids)
        for i in range(0, len(keys), _RETRIEVE_BATCH):
            records += self._call(
                name,
                self._client.retrieve,
                name,
                ids=keys[i : i + _RETRIEVE_BATCH],
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
        return uids, records

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        _, records = self._retrieve(name, ids, True, with_vectors)
        return points_in_request_order(records, ids, with_vectors)

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        uids, records = self._retrieve(name, ids, False, False)
        return {uids[str(r.id)] for r in records if str(r.id) in uids}

    def delete_points(
        self, name: str, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        node = parse_filter(filter)
        if ids is None and node is None:
            raise InvalidRequest("delete_points needs ids or a filter; to remove everything, delete the collection")
        self._dim(name)
        if ids is not None:
            ids = list(ids)
            if not ids:
                return 0
            node = restrict_to_ids(node, ids)
        qf = to_qdrant_filter(node)
        n = self._call(name, self._client.count, name, count_filter=qf, exact=True).count
        if n:
            self._call(
                name,
                self._client.delete,
                name,
                points_selector=m.FilterSelector(filter=qf),
                wait=True,
            )
        return int(n)

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
        validate_search_args(top_k, offset)
        threshold = finite_or_none(score_threshold)
        qf = to_qdrant_filter(parse_filter(filter))
        q = prepare_query_vector(vector, self._dim(name))
        res = self._call(
            name,
            self._client.query_points,
            name,
            query=q,
            limit=top_k,
            offset=offset or None,
            query_filter=qf,
            score_threshold=threshold,
            with_payload=True if with_payload else m.PayloadSelectorInclude(include=[ID_KEY]),
            with_vectors=with_vectors,
        ).points
        return [
            Hit(
                id=(p.payload or {}).get(ID_KEY, str(p.id)),
                score=float(p.score),
                payload=strip_reserved(p.payload) if with_payload else None,
                vector=list(map(float, p.vector)) if with_vectors and p.vector is not None else None,
            )
            for p in res
        ]

    def scroll(
        self, name: str, limit: int = 100, cursor: str | None = None, filter: Mapping[str, Any] | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        start = validate_scroll_args(limit, cursor)
        qf = to_qdrant_filter(parse_filter(filter))
        self._dim(name)
        records, next_id = self._call(
            name, self._client.scroll, name, scroll_filter=qf, limit=limit, offset=start, with_payload=True, with_vectors=with_vectors
        )
        return [point_from_record(r, with_vectors) for r in records], (str(next_id) if next_id is not None else None)

    def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        qf = to_qdrant_filter(parse_filter(filter))
        self._dim(name)
        return int(self._call(name, self._client.count, name, count_filter=qf, exact=True).count)

    def create_payload_index(self, name: str, field: str, schema: str) -> None:
        """Index a payload field on the server; skipped in local mode, where indexes have no effect."""
        field, kind = validate_payload_index(field, schema)
        self._dim(name)
        if self._local:
            return
        schema_type = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
            "bool": m.PayloadSchemaType.BOOL,
        }[kind]
        self._call(name, self._client.create_payload_index, name, field, field_schema=schema_type, wait=True)

    def optimize(self, name: str) -> None:
        """No-op by design: a Qdrant server builds HNSW in its own background optimizer (searches
        keep working meanwhile), and qdrant-client's local mode has no ANN index at all."""
        self._dim(name)

    def close(self) -> None:
        if self._close_client:
            with self.serialized():
                self._client.close()
