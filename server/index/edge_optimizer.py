"""One open Edge collection, and building its HNSW index on a copy in a child process.

`EdgeShard.optimize()` (merge segments + build HNSW) holds the GIL for its whole run (2.7 s at
20k x 512, 140+ s at 100k x 512 here), so run in-process it freezes the whole server. Instead
`optimize_by_copy` copies the shard, optimizes the copy in a niced child process while searches
*and writes* continue on the live shard, journals the writes made meanwhile, brings the
optimized copy up to date and swaps it in under a short exclusive lock (milliseconds). Costs: twice
the collection's disk space while it runs.

The journal keeps only the *ids* of points upserted during the build (plus the small non-upsert
operations: deletes by filter, payload indexes), not the points themselves: a bulk job that writes
throughout a long build would otherwise hold every new vector and payload in RAM a second time until
the swap. To catch up, the copy replays the small operations in order, then takes each touched id's
current state from the live shard (upserted if present, deleted if not); that is exact because an
untouched point has the same state in the copy and the live shard, and a touched one ends as live.
It runs in two rounds: the build's journal while writes go on into a fresh one, then that short
one with writes held back for the swap; searches are answered by the live shard throughout.
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
from typing import Any, Callable

import numpy as np
import qdrant_edge as qe

from .rwlock import RWLock
from .errors import CollectionNotFound, IndexFailed, IndexTimeout

__all__ = ["BuildJournal", "EdgeCollection", "META_FILE", "optimize_by_copy", "write_meta"]

log = logging.getLogger(__name__)

META_FILE = "collection.json"

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


@dataclass
class BuildJournal:
    """The writes made while a build runs: ids of upserted points, and every other operation in order.

    Ids are kept as 16 raw bytes each in one buffer: a Python set of id strings would cost ~10x
    more and pin the memory of the freed request objects around them.
    """

    touched: bytearray = field(default_factory=bytearray)
    ops: list = field(default_factory=list)

    def record(self, op: Any, upserted: list[str] | None) -> None:
        if upserted is None:
            self.ops.append(op)
        else:  # engine ids are canonical UUID strings (store.point_uuid)
            self.touched += b"".join(bytes.fromhex(uid.replace("-", "")) for uid in upserted)

    def touched_ids(self) -> list[str]:
        """The distinct ids upserted during the build, as the engine's UUID strings."""
        raw = np.unique(np.frombuffer(bytes(self.touched), dtype=np.uint8).reshape(-1, 16), axis=0)
        return [str(uuid.UUID(bytes=row.tobytes())) for row in raw]

    def __len__(self) -> int:
        return len(self.touched) // 16 + len(self.ops)

    def catch_up(self, live: Any, copy: Any, batch: int = 512) -> None:
        """Bring `copy` (the shard as it was copied, now optimized) to `live`'s state."""
        for op in self.ops:  # deletes by filter and payload indexes, on the copy's state
            copy.update(op)
        ids = self.touched_ids()
        for i in range(0, len(ids), batch):
            chunk = ids[i : i + batch]
            records = live.retrieve(chunk, True, True)
            if records:
                copy.update(qe.UpdateOperation.upsert_points([qe.Point(r.id, r.vector, r.payload) for r in records]))
            present = {str(r.id) for r in records}
            gone = [uid for uid in chunk if uid not in present]
            if gone:  # upserted during the build, then deleted again
                copy.update(qe.UpdateOperation.delete_points(gone))


@dataclass(eq=False)
class EdgeCollection:
    """One open collection. `rw` guards the shard handle (shared: use it, exclusive: swap/close);
    `write_lock` serialises writes so the optimize journal sees them in engine order."""

    name: str
    dir: Path
    meta: dict
    shard: Any
    rw: RWLock = field(default_factory=RWLock)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    optimize_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: "BuildJournal | None" = None
    proc: subprocess.Popen | None = None
    closed: bool = False

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def shard_dir(self) -> Path:
        return self.dir / f"shard-{int(self.meta['generation'])}"

    def apply(self, op: Any, upserted: list[Any] | None = None) -> None:
        """One write (`upserted`: the point ids of an upsert); journaled while an optimize() builds a copy."""
        self.shard.update(op)
        if self.journal is not None:
            self.journal.record(op, upserted)

    def shutdown(self) -> None:
        """Close the shard; the caller holds write_lock + rw.exclusive()."""
        self.closed = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # our own optimizer child
        try:
            self.shard.close()
        except Exception as exc:  # already closed, or flush failed: nothing left to do but report
            log.warning("closing collection %r: %s", self.name, exc)


def write_meta(coll_dir: Path, meta: dict) -> None:
    """Write collection.json durably (temp file, fsync, rename, fsync the directory)."""
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


def optimize_by_copy(coll: EdgeCollection, load: Callable[[Path], Any], timeout_s: float) -> dict[str, float]:
    """Optimize a copy of the collection's shard in a child process and swap it in; returns the
    phase end times in seconds. `load(dir)` opens a shard directory with the collection's config."""
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
            coll.journal = BuildJournal()
            t["copied"] = time.perf_counter()
            coll.proc = subprocess.Popen(
                [sys.executable, "-c", _OPTIMIZE_CHILD, str(new_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        proc = coll.proc
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise IndexTimeout(
                f"optimize of {coll.name!r} did not finish within {timeout_s:.0f} s; searches still work (brute force); "
                "retry when the machine is less busy"
            ) from None
        if coll.closed:
            raise CollectionNotFound(coll.name)
        if proc.returncode != 0:
            raise IndexFailed(f"optimize of {coll.name!r} failed (exit {proc.returncode}): {err.strip()[-2000:]}")
        t["built"] = time.perf_counter()
        new_shard = load(new_dir)  # outside any lock: it only mmaps files
        t["loaded"] = time.perf_counter()
        # Catch up in two rounds: the build's writes while new writes go on (into a fresh journal),
        # then the few made meanwhile with writes held back; searches are answered throughout.
        with coll.write_lock:
            first, coll.journal = coll.journal or BuildJournal(), BuildJournal()
        with coll.rw.shared():
            if coll.closed:
                raise CollectionNotFound(coll.name)
            first.catch_up(coll.shard, new_shard)
        with coll.write_lock:
            t["locked"] = time.perf_counter()
            with coll.rw.shared():
                if coll.closed:
                    raise CollectionNotFound(coll.name)
                journal = coll.journal or BuildJournal()
                journal.catch_up(coll.shard, new_shard)
                new_shard.flush()
            t["caught_up"] = time.perf_counter()
            with coll.rw.exclusive():
                if coll.closed:
                    raise CollectionNotFound(coll.name)
                meta = dict(coll.meta, generation=new_gen)
                write_meta(coll.dir, meta)  # the commit point: a crash before it keeps the old shard
                old_shard, old_dir = coll.shard, coll.shard_dir
                replayed = len(first) + len(journal)
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
            "optimized %r (generation %d): child %s; copy %.2fs, build %.2fs, load %.3fs, catch up with writes held %.3fs (%d ids and operations in all), exclusive swap %.3fs, close old %.3fs",
            coll.name, new_gen, out.strip(), t["copied"] - t["start"], t["built"] - t["copied"],
            t["loaded"] - t["built"], t["caught_up"] - t["locked"], replayed, t["swapped"] - t["caught_up"], t["closed"] - t["swapped"],
        )
        return {k: round(v - t["start"], 4) for k, v in t.items()}
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
