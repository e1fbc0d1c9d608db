"""`EngineStore`: the one skeleton both index engines share.

Every public `IndexStore` method is written once, here: argument validation, filter parsing,
the collection-metadata cache, mapping engine records to `Point`/`Hit`, and turning engine
exceptions into the error table's codes. An engine subclass supplies only its engine calls (the
`_engine_*` methods) and the objects its filters are made of (`filter_builder`).

Collection metadata (dim, space id, model) is read on every add and search, so it is cached
(`describe`) instead of asked of the engine, and never counts points. An engine that other
processes can change (a shared Qdrant server) gives the cache a lifetime: a collection deleted or
recreated behind this server's back is noticed on the next engine call that fails (which also
drops the cache entry) or, at the latest, once the entry expires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import OmnivecError
from .aliases import AliasMap, Physical
from .filters import FilterBuilder, FilterNode, parse_filter, render_filter, restrict_to_ids
from .errors import CollectionExists, CollectionNotFound, IndexFailed, IndexStoreError, InvalidRequest
from .media import MediaStore
from .vector_options import VectorOptions
from .store import (
    ID_KEY,
    CollectionInfo,
    CollectionMeta,
    DocumentStore,
    Hit,
    Point,
    finite_or_none,
    point_from_record,
    point_uuid,
    points_in_request_order,
    prepare_points,
    prepare_query_vector,
    utc_now_iso,
    validate_collection_name,
    validate_payload_index,
    validate_scroll_args,
    validate_search_args,
)

__all__ = ["EngineStore", "Prepared"]

log = logging.getLogger(__name__)

Prepared = list[tuple[str, str, list[float], dict]]  # (uuid, api id, vector, stored payload), see prepare_points
MAX_DIM = 65536


class EngineStore(ABC):
    """The shared half of every engine (see the module docstring); thread-safe if the engine calls are."""

    # Seconds a cached collection description is trusted; None: forever (this process owns the engine).
    meta_ttl_s: float | None = None

    def __init__(self) -> None:
        self._metas: dict[str, tuple[CollectionMeta, float]] = {}
        self._metas_lock = threading.Lock()
        self._alias_map: AliasMap | None = None

    # -- what an engine supplies ----------------------------------------------------------------

    filter_builder: FilterBuilder

    @abstractmethod
    def _engine_create(self, meta: CollectionMeta) -> None:
        """Create the collection; CollectionExists when the name is taken."""

    def _engine_check_options(self, vectors: VectorOptions) -> None:
        """Refuse (InvalidRequest, 422) vector options this engine cannot honour; both engines take all by default."""

    @abstractmethod
    def _engine_describe(self, name: str) -> CollectionMeta:
        """Read the collection's metadata from the engine; CollectionNotFound when absent or not ours."""

    @abstractmethod
    def _engine_names(self) -> list[str]:
        """Names of the collections the engine may hold for us (others are filtered by describe)."""

    @abstractmethod
    def _engine_drop(self, name: str) -> None: ...

    @abstractmethod
    def _engine_upsert(self, name: str, points: Prepared) -> None: ...

    @abstractmethod
    def _engine_retrieve(self, name: str, uids: list[str], with_payload: bool, with_vectors: bool) -> list[Any]:
        """Records (`.id`, `.payload`, `.vector`) of the stored points among `uids`."""

    @abstractmethod
    def _engine_delete(self, name: str, flt: Any) -> int:
        """Delete the points matching the rendered filter; how many went."""

    @abstractmethod
    def _engine_query(
        self, name: str, vector: list[float], top_k: int, offset: int, flt: Any, threshold: float | None, with_payload: bool, with_vectors: bool
    ) -> list[Any]:
        """Scored records (`.id`, `.score`, `.payload`, `.vector`), best first; without `with_payload`
        the payload must still hold ID_KEY."""

    @abstractmethod
    def _engine_scroll(self, name: str, limit: int, start: str | None, flt: Any, with_vectors: bool) -> tuple[list[Any], Any]: ...

    @abstractmethod
    def _engine_count(self, name: str, flt: Any) -> int: ...

    @abstractmethod
    def _engine_payload_index(self, name: str, field: str, kind: str) -> None: ...

    @abstractmethod
    def _engine_optimize(self, name: str) -> None: ...

    @abstractmethod
    def _engine_close(self) -> None: ...

    @abstractmethod
    def _engine_error(self, exc: Exception, name: str | None) -> IndexStoreError:
        """The table's error for an exception the engine library raised (unreachable, timed out,
        collection gone, refused)."""

    @abstractmethod
    def documents(self, kind: str) -> DocumentStore: ...

    @abstractmethod
    def media(self) -> MediaStore: ...

    # -- shared plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _engine(self, name: str | None = None) -> Iterator[None]:
        """Around every engine call: typed errors pass, anything else is translated; any failure
        drops the collection's cached metadata (it may be what changed)."""
        try:
            yield
        except Exception as exc:
            if name is not None:
                self._forget(name)
            if isinstance(exc, OmnivecError):
                raise
            err = self._engine_error(exc, name)
            if isinstance(err, IndexFailed):
                log.error("index engine failed%s", f" on collection {name!r}" if name else "", exc_info=exc)
            raise err from exc

    def _forget(self, name: str) -> None:
        with self._metas_lock:
            self._metas.pop(name, None)

    def _remember(self, meta: CollectionMeta) -> None:
        with self._metas_lock:
            self._metas[meta.name] = (meta, time.monotonic())

    def _filter(self, flt: Mapping[str, Any] | FilterNode | None) -> Any:
        """The engine's filter for filter JSON, or for a filter the caller already parsed."""
        return render_filter(parse_filter(flt), self.filter_builder)

    # -- names pointing at other collections (aliases.py) ----------------------------------------

    @property
    def _names(self) -> AliasMap:
        if self._alias_map is None:
            self._alias_map = AliasMap(self.documents("aliases"), ttl_s=self.meta_ttl_s)
        return self._alias_map

    def resolve(self, name: str) -> Physical:
        """The physical collection `name` stands for now; pass it on to pin one request to one collection."""
        if isinstance(name, Physical):  # already resolved (and checked) by this store
            return name
        validate_collection_name(name)
        return self._names.resolve(name)

    def aliases(self) -> dict[str, str]:
        """Every name that points at another physical collection."""
        return dict(self._names.current())

    def point_name(self, name: str, physical: str, old_name: str | None = None) -> None:
        """Point `name` at `physical` in one step (the swap); the collection it stood for stays, reachable as `old_name`."""
        validate_collection_name(name)
        previous = self.resolve(name)
        self.describe(Physical(physical))  # CollectionNotFound before anything moves
        renames = {name: physical}
        if old_name is not None and previous != physical:
            validate_collection_name(old_name)
            if previous != old_name:
                renames[old_name] = previous
        self._names.update(renames)
        for changed in renames:
            self._forget(changed)

    # -- collections ----------------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, space_id: str, model: str, extra: dict | None = None, vectors: VectorOptions | None = None
    ) -> CollectionInfo:
        validate_collection_name(name)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIM:
            raise InvalidRequest(f"dim must be an integer between 1 and {MAX_DIM}, got {dim!r}")
        if not isinstance(name, Physical) and name in self._names.current():
            raise CollectionExists(name)
        vectors = vectors or VectorOptions()
        self._engine_check_options(vectors)
        meta = CollectionMeta(name, dim, space_id, model, utc_now_iso(), dict(extra or {}), vectors)
        with self._engine(name):
            self._engine_create(meta)
        self._remember(meta)
        return CollectionInfo.of(meta, 0)

    def describe(self, name: str) -> CollectionMeta:
        target = self.resolve(name)
        with self._metas_lock:
            cached = self._metas.get(target)
        if cached is not None and (self.meta_ttl_s is None or time.monotonic() - cached[1] < self.meta_ttl_s):
            meta = cached[0]
        else:
            with self._engine(target):
                meta = self._engine_describe(target)
            self._remember(meta)
        return meta if meta.name == name else dataclasses.replace(meta, name=str(name))

    def get_collection(self, name: str) -> CollectionInfo:
        """Fresh metadata (refreshing the cache) and an exact count: what GET /v1/collections/{name} shows."""
        target = self.resolve(name)
        self._forget(target)
        meta = self.describe(name)
        with self._engine(target):
            return CollectionInfo.of(meta, int(self._engine_count(target, None)))

    def list_collections(self) -> list[CollectionInfo]:
        with self._engine():
            physical = set(self._engine_names())
        aliases = self._names.current()
        names = sorted((physical - set(aliases.values())) | set(aliases))  # a collection a name points at is listed under that name
        out = []
        for name in names:
            try:
                out.append(self.get_collection(name))
            except (CollectionNotFound, InvalidRequest):  # not ours, odd name, or deleted meanwhile
                continue
        return out

    def delete_collection(self, name: str) -> None:
        target = self.resolve(name)
        self.describe(target)  # CollectionNotFound, and never drop a collection omnivec did not create
        try:
            with self._engine(target):
                self._engine_drop(target)
        finally:
            self._forget(target)
            if name in self._names.current() or target in self._names.current().values():
                self._names.update({}, remove={name}, remove_targets={target})

    # -- points ---------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        target = self.resolve(name)
        prepared = prepare_points(points, self.describe(target).dim)
        with self._engine(target):
            self._engine_upsert(target, prepared)

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        target = self.resolve(name)
        uids = list(dict.fromkeys(point_uuid(i) for i in ids))
        self.describe(target)
        with self._engine(target):
            records = self._engine_retrieve(target, uids, True, with_vectors)
        return points_in_request_order(records, ids, with_vectors)

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        target = self.resolve(name)
        uids = {point_uuid(i): i for i in ids}
        self.describe(target)
        with self._engine(target):
            records = self._engine_retrieve(target, list(uids), False, False)
        return {uids[str(r.id)] for r in records if str(r.id) in uids}

    def delete_points(self, name: str, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None) -> int:
        target = self.resolve(name)
        node = parse_filter(filter)
        if ids is None and node is None:
            raise InvalidRequest("delete_points needs ids or a filter; to remove everything, delete the collection")
        if ids is not None:
            ids = list(ids)
            for i in ids:
                point_uuid(i)  # validate
            if not ids:
                self.describe(target)
                return 0
            node = restrict_to_ids(node, ids)
        flt = render_filter(node, self.filter_builder)
        self.describe(target)
        with self._engine(target):
            return int(self._engine_delete(target, flt))

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
        target = self.resolve(name)
        validate_search_args(top_k, offset)
        threshold = finite_or_none(score_threshold)
        flt = self._filter(filter)
        query = prepare_query_vector(vector, self.describe(target).dim)
        with self._engine(target):
            records = self._engine_query(target, query, top_k, offset, flt, threshold, with_payload, with_vectors)
        return [self._hit(r, with_payload, with_vectors) for r in records]

    @staticmethod
    def _hit(record: Any, with_payload: bool, with_vectors: bool) -> Hit:
        point = point_from_record(record, with_vectors)
        return Hit(id=point.id, score=float(record.score), payload=point.payload if with_payload else None, vector=point.vector if with_vectors else None)

    def scroll(
        self, name: str, limit: int = 100, cursor: str | None = None, filter: Mapping[str, Any] | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        target = self.resolve(name)
        start = validate_scroll_args(limit, cursor)
        flt = self._filter(filter)
        self.describe(target)
        with self._engine(target):
            records, next_id = self._engine_scroll(target, limit, start, flt, with_vectors)
        return [point_from_record(r, with_vectors) for r in records], (str(next_id) if next_id is not None else None)

    def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        target = self.resolve(name)
        flt = self._filter(filter)
        self.describe(target)
        with self._engine(target):
            return int(self._engine_count(target, flt))

    def create_payload_index(self, name: str, field: str, schema: str) -> None:
        target = self.resolve(name)
        field, kind = validate_payload_index(field, schema)
        self.describe(target)
        with self._engine(target):
            self._engine_payload_index(target, field, kind)

    def optimize(self, name: str) -> None:
        target = self.resolve(name)
        self.describe(target)
        with self._engine(target):
            self._engine_optimize(target)

    def close(self) -> None:
        with self._engine():
            self._engine_close()

    def __enter__(self) -> "EngineStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The reserved payload key engines must return even when payloads are not asked for.
PAYLOAD_ID_ONLY = [ID_KEY]
