"""`EdgeIndexStore`: the embedded default engine, Qdrant Edge (the Qdrant engine in-process).

On-disk layout (one Edge shard per collection, surviving restarts)::

    data_dir/
      <collection>/collection.json     dim, space_id, model, created_at, extra, current generation
      <collection>/shard-<gen>/        the EdgeShard (segments + WAL, WAL always on)
      .trash/                          collections being deleted (emptied on startup)

Facts about qdrant_edge 0.9 that shape this module (measured, see the report in bench_index.py):

* Every EdgeShard call holds the GIL for its whole duration. Calls from several threads are safe but
  run one at a time, and while one runs no other Python thread (event loop included) makes progress.
* `EdgeShard.optimize()` (merge segments + build HNSW) is synchronous and also holds the GIL: 2.7 s
  at 20k x 512, 140+ s at 100k x 512 on this machine. Run in-process it freezes the whole server.
  So `optimize()` here builds the index on a *copy* of the shard in a child process (niced), while
  searches *and writes* continue on the live shard; writes made meanwhile are journaled and replayed
  onto the optimized copy, which is then swapped in under a short exclusive lock (milliseconds to
  load the new shard's files + replay). Costs: twice the collection's disk space while it runs.
  `optimize_in_subprocess=False` restores the simple in-process call (blocks everything).
* Only one EdgeShard may open a directory at a time (the WAL is locked), so two server processes
  cannot share a data_dir: the second one fails at startup.
* Engine errors are raised as bare `Exception` with text messages; we validate inputs up front so
  callers get our typed errors instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import qdrant_edge as qe

from .filters import parse_filter, restrict_to_ids, to_edge_filter
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

__all__ = ["EdgeIndexStore"]

log = logging.getLogger(__name__)

META_FILE = "collection.json"
TRASH_DIR = ".trash"
_UPSERT_BATCH = 1000  # one engine call holds the GIL; keep each one short
_RETRIEVE_BATCH = 1024

# The optimizer child: opens the copied shard, builds its indexes, closes it. Imports only
# qdrant_edge (never torch, never omnivec), lowers its priority so live searches win the CPU.
_OPTIMIZE_CHILD = r"""
import json, os, sys, time
try:
    os.nice(10)
except Exception:
    pass
import qdrant_edge as qe
t = time.time()
shard = qe.EdgeShard.load(sys.argv[1])
changed = shard.optimize()
info = shard.info()
shard.close()
print(json.dumps({"changed": bool(changed), "seconds": round(time.time() - t, 3),
                  "points": info.points_count, "indexed": info.indexed_vectors_count}))
"""


class _RWLock:
    """Writer-preferring readers-writer lock (not re-entrant): many searches, or one swap."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(eq=False)
class _Collection:
    """One open collection. `rw` guards the shard handle (shared: use it, exclusive: swap/close);
    `write_lock` serialises writes so the optimize journal sees them in engine order."""

    name: str
    dir: Path
    meta: dict
    shard: Any
    rw: _RWLock = field(default_factory=_RWLock)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    optimize_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: list | None = None
    proc: subprocess.Popen | None = None
    closed: bool = False

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def shard_dir(self) -> Path:
        return self.dir / f"shard-{int(self.meta['generation'])}"


class EdgeIndexStore:
    """`IndexStore` on Qdrant Edge shards under `data_dir` (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        search_threads: int | None = None,
        indexing_threads: int = 0,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        hnsw_ef: int | None = None,
        full_scan_threshold_kb: int = 10_000,
        indexing_threshold_kb: int | None = None,
        optimize_in_subprocess: bool = True,
        optimize_timeout_s: float = 6 * 3600,
    ) -> None:
        """Open (or create) `data_dir` and reopen every collection found there.

        search_threads: the engine's per-shard search pool size (None: one per CPU).
        indexing_threads: HNSW build threads used by optimize() (0: all CPUs).
        hnsw_ef: search-time beam width (None: the engine default); raise it for better recall.
        full_scan_threshold_kb / indexing_threshold_kb: below these vector-data sizes a segment is
        searched by brute force / not given an HNSW index by optimize() (None: engine default).
        """
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._search_threads = search_threads
        self._indexing_threads = indexing_threads
        self._hnsw_m = hnsw_m
        self._hnsw_ef_construct = hnsw_ef_construct
        self._params = qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self._full_scan_kb = full_scan_threshold_kb
        self._indexing_kb = indexing_threshold_kb
        self._subprocess = optimize_in_subprocess
        self._optimize_timeout_s = optimize_timeout_s
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self._closed = False
        self.last_optimize_timings: dict[str, float] = {}  # phase end times (s) of the last optimize()
        shutil.rmtree(self.data_dir / TRASH_DIR, ignore_errors=True)
        try:
            for d in sorted(self.data_dir.iterdir()):
                if d.name.startswith(".") or not d.is_dir():
                    continue
                if not (d / META_FILE).is_file():
                    log.warning("ignoring %s: no %s (an interrupted create?)", d, META_FILE)
                    continue
                self._open_existing(d)
        except BaseException:
            self.close()  # release the shards (and their WAL locks) opened so far
            raise

    # -- plumbing -------------------------------------------------------------------------------

    def _config(self, dim: int) -> "qe.EdgeConfig":
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=self._hnsw_m,
                ef_construct=self._hnsw_ef_construct,
                full_scan_threshold=self._full_scan_kb,
                max_indexing_threads=self._indexing_threads,
            ),
            optimizers=(
                qe.EdgeOptimizersConfig(indexing_threshold=self._indexing_kb)
                if self._indexing_kb is not None
                else None
            ),
            max_search_threads=self._search_threads,
            wal_enabled=True,
        )

    def _open_existing(self, d: Path) -> None:
        meta = json.loads((d / META_FILE).read_text())
        meta["name"] = d.name  # the directory name is authoritative
        gen = int(meta["generation"])
        coll = _Collection(name=d.name, dir=d, meta=meta, shard=None)
        try:
            coll.shard = qe.EdgeShard.load(str(coll.shard_dir), self._config(coll.dim))
        except Exception as exc:
            raise IndexStoreError(
                f"cannot open collection {d.name!r} at {coll.shard_dir}: {exc}. Is another omnivec "
                "process using this data directory? If not, restore the directory from a backup or "
                "delete it to drop the collection."
            ) from exc
        for other in d.glob("shard-*"):  # leftovers of an interrupted optimize()
            if other.name != f"shard-{gen}":
                shutil.rmtree(other, ignore_errors=True)
        self._collections[coll.name] = coll

    def _write_meta(self, coll_dir: Path, meta: dict) -> None:
        tmp = coll_dir / (META_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, coll_dir / META_FILE)
        fd = os.open(coll_dir, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename itself durable
        finally:
            os.close(fd)

    def _get(self, name: str) -> _Collection:
        with self._lock:
            if self._closed:
                raise IndexStoreError("the index store is closed")
            validate_collection_name(name)
            coll = self._collections.get(name)
        if coll is None:
            raise CollectionNotFound(name)
        return coll

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[_Collection]:
        coll = self._get(name)
        with coll.rw.shared():
            if coll.closed:
                raise CollectionNotFound(name)
            yield coll

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[_Collection]:
        coll = self._get(name)
        with coll.write_lock, coll.rw.shared():
            if coll.closed:
                raise CollectionNotFound(name)
            yield coll

    @staticmethod
    def _apply(coll: _Collection, op: Any) -> None:
        coll.shard.update(op)
        if coll.journal is not None:  # an optimize() is building a copy: replay this onto it later
            coll.journal.append(op)

    def _info(self, coll: _Collection) -> CollectionInfo:
        m = coll.meta
        return CollectionInfo(
            name=coll.name,
            dim=coll.dim,
            space_id=m["space_id"],
            model=m["model"],
            count=int(coll.shard.count(qe.CountRequest(exact=True))),
            created_at=m["created_at"],
            extra=dict(m.get("extra") or {}),
        )

    # -- collections ----------------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, space_id: str, model: str, extra: dict | None = None
    ) -> CollectionInfo:
        validate_collection_name(name)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
            raise InvalidRequest(f"dim must be an integer between 1 and 65536, got {dim!r}")
        meta = {
            "name": name,
            "dim": dim,
            "space_id": space_id,
            "model": model,
            "created_at": utc_now_iso(),
            "extra": dict(extra or {}),
            "distance": "cosine",
            "generation": 0,
            "format": 1,
        }
        json.dumps(meta)  # extra must be JSON-serialisable; fail before touching the disk
        with self._lock:
            if self._closed:
                raise IndexStoreError("the index store is closed")
            if name in self._collections:
                raise CollectionExists(name)
            d = self.data_dir / name
            if d.exists():  # debris of an interrupted create (no collection.json, else it'd be open)
                shutil.rmtree(d)
            d.mkdir(parents=True)
            coll = _Collection(name=name, dir=d, meta=meta, shard=None)
            coll.shard = qe.EdgeShard.create(str(coll.shard_dir), self._config(dim))
            self._write_meta(d, meta)  # last: its presence marks a complete collection
            self._collections[name] = coll
            return CollectionInfo(name, dim, space_id, model, 0, meta["created_at"], meta["extra"])

    def get_collection(self, name: str) -> CollectionInfo:
        with self._reading(name) as coll:
            return self._info(coll)

    def list_collections(self) -> list[CollectionInfo]:
        with self._lock:
            names = sorted(self._collections)
        out = []
        for n in names:
            try:
                out.append(self.get_collection(n))
            except CollectionNotFound:  # deleted meanwhile
                continue
        return out

    def delete_collection(self, name: str) -> None:
        with self._lock:
            coll = self._get(name)
            with coll.write_lock, coll.rw.exclusive():
                self._shutdown(coll)
            del self._collections[name]
            trash = self.data_dir / TRASH_DIR
            trash.mkdir(exist_ok=True)
            target = trash / f"{name}-{uuid.uuid4().hex}"
            os.replace(coll.dir, target)
        shutil.rmtree(target, ignore_errors=True)

    @staticmethod
    def _shutdown(coll: _Collection) -> None:
        """Close a collection's shard; caller holds write_lock + exclusive."""
        coll.closed = True
        proc = coll.proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # our own optimizer child
        try:
            coll.shard.close()
        except Exception as exc:  # already closed, or flush failed: nothing left to do but report
            log.warning("closing collection %r: %s", coll.name, exc)

    # -- points ---------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        with self._writing(name) as coll:
            prepared = prepare_points(points, coll.dim)
            for i in range(0, len(prepared), _UPSERT_BATCH):
                batch = [
                    qe.Point(uid, vec, payload) for uid, _pid, vec, payload in prepared[i : i + _UPSERT_BATCH]
                ]
                self._apply(coll, qe.UpdateOperation.upsert_points(batch))

    def _records(self, coll: _Collection, uids: list[str], with_payload: bool, with_vector: bool) -> list:
        out = []
        for i in range(0, len(uids), _RETRIEVE_BATCH):
            out += coll.shard.retrieve(uids[i : i + _RETRIEVE_BATCH], with_payload, with_vector)
        return out

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        uids = list(dict.fromkeys(point_uuid(i) for i in ids))
        with self._reading(name) as coll:
            records = self._records(coll, uids, True, with_vectors)
        return points_in_request_order(records, ids, with_vectors)

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        uids = {point_uuid(i): i for i in ids}
        with self._reading(name) as coll:
            records = self._records(coll, list(uids), False, False)
        return {uids[str(r.id)] for r in records if str(r.id) in uids}

    def delete_points(
        self, name: str, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        node = parse_filter(filter)
        if ids is None and node is None:
            raise InvalidRequest("delete_points needs ids or a filter; to remove everything, delete the collection")
        if ids is not None:
            ids = list(ids)
            for i in ids:
                point_uuid(i)  # validate
            if not ids:
                self._get(name)
                return 0
            node = restrict_to_ids(node, ids)
        ef = to_edge_filter(node)
        with self._writing(name) as coll:  # count + delete under the write lock: exact
            n = int(coll.shard.count(qe.CountRequest(exact=True, filter=ef)))
            if n:
                self._apply(coll, qe.UpdateOperation.delete_points_by_filter(ef))
        return n

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
        ef = to_edge_filter(parse_filter(filter))
        with self._reading(name) as coll:
            q = prepare_query_vector(vector, coll.dim)
            req = qe.QueryRequest(
                limit=top_k,
                offset=offset,
                query=qe.Query.Nearest(q),
                filter=ef,
                score_threshold=threshold,
                with_payload=True if with_payload else qe.PayloadSelector.Include([ID_KEY]),
                with_vector=with_vectors,
                params=self._params,
            )
            res = coll.shard.query(req)
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
        ef = to_edge_filter(parse_filter(filter))
        with self._reading(name) as coll:
            records, next_id = coll.shard.scroll(qe.ScrollRequest(limit=limit, offset=start, filter=ef, with_payload=True, with_vector=with_vectors))
        return [point_from_record(r, with_vectors) for r in records], (str(next_id) if next_id is not None else None)

    def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        ef = to_edge_filter(parse_filter(filter))
        with self._reading(name) as coll:
            return int(coll.shard.count(qe.CountRequest(exact=True, filter=ef)))

    def create_payload_index(self, name: str, field: str, schema: str) -> None:
        """Index a payload field. On Edge this matters a lot: without an index a filtered search
        reads every payload (~7.5 ms vs ~0.5 ms at 20k x 512 for a 10 % keyword filter)."""
        field, kind = validate_payload_index(field, schema)
        schema_type = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
            "bool": qe.PayloadSchemaType.Bool,
        }[kind]
        with self._writing(name) as coll:
            self._apply(coll, qe.UpdateOperation.create_field_index(field, schema_type))

    # -- optimize -------------------------------------------------------------------------------

    def optimize(self, name: str) -> None:
        """Merge segments and build the HNSW index after bulk inserts.

        Default (subprocess) mode: searches and writes keep running on the live shard for the whole
        build; only the final swap takes an exclusive lock (load of the optimized shard's files,
        replay of writes made meanwhile). A second concurrent call for the same collection waits
        for the running one instead of starting another. With `optimize_in_subprocess=False` the
        engine's own optimize() runs in-process and, holding the GIL, blocks every thread until done.
        """
        coll = self._get(name)
        if not coll.optimize_lock.acquire(blocking=False):
            with coll.optimize_lock:  # one is running: wait for it, its result is ours
                pass
            self._get(name)
            return
        try:
            if not self._subprocess:
                with self._writing(name) as c:
                    c.shard.optimize()
                return
            self._optimize_via_copy(coll)
        finally:
            coll.optimize_lock.release()

    def _optimize_via_copy(self, coll: _Collection) -> None:
        new_gen = int(coll.meta["generation"]) + 1
        new_dir = coll.dir / f"shard-{new_gen}"
        new_shard = None
        t = {"start": time.perf_counter()}
        try:
            with coll.write_lock, coll.rw.shared():
                if coll.closed:
                    raise CollectionNotFound(coll.name)
                shutil.rmtree(new_dir, ignore_errors=True)
                coll.shard.flush()
                shutil.copytree(coll.shard_dir, new_dir)
                coll.journal = []
                t["copied"] = time.perf_counter()
                coll.proc = subprocess.Popen(
                    [sys.executable, "-c", _OPTIMIZE_CHILD, str(new_dir)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            proc = coll.proc
            try:
                out, err = proc.communicate(timeout=self._optimize_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise IndexStoreError(
                    f"optimize of {coll.name!r} did not finish within {self._optimize_timeout_s:.0f} s; "
                    "searches still work (brute force); retry when the machine is less busy"
                )
            if coll.closed:
                raise CollectionNotFound(coll.name)
            if proc.returncode != 0:
                raise IndexStoreError(
                    f"optimize of {coll.name!r} failed (exit {proc.returncode}): {err.strip()[-2000:]}"
                )
            t["built"] = time.perf_counter()
            # Opening the optimized shard happens outside any lock (it only mmaps files).
            new_shard = qe.EdgeShard.load(str(new_dir), self._config(coll.dim))
            t["loaded"] = time.perf_counter()
            with coll.write_lock, coll.rw.exclusive():
                t["locked"] = time.perf_counter()
                if coll.closed:
                    raise CollectionNotFound(coll.name)
                for op in coll.journal or ():
                    new_shard.update(op)
                new_shard.flush()
                meta = dict(coll.meta, generation=new_gen)
                self._write_meta(coll.dir, meta)  # the commit point: a crash before it keeps the old shard
                old_shard, old_dir = coll.shard, coll.shard_dir
                replayed = len(coll.journal or ())
                coll.shard, coll.meta, coll.journal, coll.proc = new_shard, meta, None, None
                new_shard = None
                t["swapped"] = time.perf_counter()
            try:
                old_shard.close()
            except Exception as exc:
                log.warning("closing the replaced shard of %r: %s", coll.name, exc)
            t["closed"] = time.perf_counter()
            shutil.rmtree(old_dir, ignore_errors=True)
            log.info(
                "optimized %r (generation %d): child %s; copy %.2fs, build %.2fs, load %.3fs, "
                "exclusive swap %.3fs (%d writes replayed), close old %.3fs",
                coll.name, new_gen, out.strip(), t["copied"] - t["start"], t["built"] - t["copied"],
                t["loaded"] - t["built"], t["swapped"] - t["locked"], replayed, t["closed"] - t["swapped"],
            )
            self.last_optimize_timings = {k: round(v - t["start"], 4) for k, v in t.items()}
        finally:
            if coll.journal is not None or coll.proc is not None:
                with coll.write_lock:
                    coll.journal = None
                    coll.proc = None
            if new_shard is not None:
                with contextlib.suppress(Exception):
                    new_shard.close()
            if int(coll.meta["generation"]) != new_gen:
                shutil.rmtree(new_dir, ignore_errors=True)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            colls = list(self._collections.values())
            self._collections.clear()
        for coll in colls:
            with coll.write_lock, coll.rw.exclusive():
                self._shutdown(coll)

    def __enter__(self) -> "EdgeIndexStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
