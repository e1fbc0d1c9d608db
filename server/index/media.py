"""Kept media: the bytes the server keeps of each indexed item, stored where the index lives.

One `MediaStore` protocol, two stores, one contract suite (`tests/server/test_media_stores.py`),
following the document stores: `FileMediaStore` (here) under the embedded engine's data dir, one
file per item named by the sha256 of the item id (ids are free-form strings), written to a temp
name, fsynced and renamed; and `qdrant_media.QdrantMediaStore`, points of a hidden Qdrant
collection, so every replica behind the same Qdrant serves the same media. `IndexStore.media()`
gives the one that goes with the engine; what to keep is decided above, in `services/media_keeper.py`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from .store import utc_now_iso, validate_collection_name

try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - no C library to load: fsync per file
    _LIBC = None

__all__ = ["KeptMedia", "MediaStore", "FileMediaStore"]


@dataclass
class KeptMedia:
    """What is kept of one item: a preview and maybe the original, or only the URL it came from."""

    modality: str
    preview: bytes | None = None
    preview_type: str | None = None
    original: bytes | None = None  # filled by get(..., with_original=True) when one was kept
    original_type: str | None = None
    original_bytes: int = 0  # size of the kept original (0: none kept)
    url: str | None = None
    etag: str = ""
    updated_at: str = field(default_factory=utc_now_iso)

    def __post_init__(self) -> None:
        if not self.etag:
            digest = hashlib.sha256()
            for part in (self.preview or b"", (self.url or "").encode(), self.original or b""):
                digest.update(hashlib.sha256(part).digest())
            self.etag = digest.hexdigest()[:32]
        if self.original is not None:
            self.original_bytes = len(self.original)

    def record(self) -> dict:
        """The metadata (no bytes) as a JSON-able dict."""
        return {k: v for k, v in asdict(self).items() if k not in ("preview", "original")}


class MediaStore(Protocol):
    """Keep, fetch and forget items' media, per collection. `get` answers None when nothing is kept."""

    def put(self, collection: str, item_id: str, media: KeptMedia) -> None: ...

    def put_many(self, collection: str, items: list[tuple[str, KeptMedia]]) -> None: ...

    def get(self, collection: str, item_id: str, with_original: bool = False) -> KeptMedia | None: ...

    def delete(self, collection: str, item_ids: Iterable[str]) -> None: ...

    def drop(self, collection: str) -> None: ...

    def ids(self, collection: str) -> set[str]: ...


def _syncfs(where: Path) -> bool:
    """Flush the file system holding `where` (Linux syncfs(2)); False where that is not available."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(where, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _item_key(item_id: str) -> str:
    return hashlib.sha256(item_id.encode("utf-8")).hexdigest()


class FileMediaStore:
    """Kept media as files, one per item, under one directory per collection (the embedded engine's data dir).

    An item's file is its record as one JSON line, then the preview bytes, then the original's:
    one write, one fsync and one rename per item, and a reader always sees a record with the bytes
    it describes (a replaced item is never half old, half new).
    """

    SUFFIX = ".media"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, collection: str, item_id: str) -> Path:
        key = _item_key(item_id)
        return self.root / validate_collection_name(collection) / key[:2] / f"{key}{self.SUFFIX}"

    def put(self, collection: str, item_id: str, media: KeptMedia) -> None:
        path, tmp = self._write(collection, item_id, media, 0, sync=True)
        os.replace(tmp, path)

    def put_many(self, collection: str, items: list[tuple[str, KeptMedia]]) -> None:
        """Several items with one flush to disk instead of one fsync each (a bulk add's batch: 64 fsyncs
        cost ~100 ms here, more than the model): every file is written to its temp name, the file system is
        synced once (syncfs; an fsync per file where there is none), then each is renamed, so as with
        put() no rename lands before its bytes. A later item of the same id wins."""
        written: list[tuple[Path, Path]] = []
        try:
            for n, (item_id, media) in enumerate(items):
                written.append(self._write(collection, item_id, media, n, sync=False))
            if written and not _syncfs(self.root):
                for _, tmp in written:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            while written:
                path, tmp = written.pop(0)
                os.replace(tmp, path)
        finally:
            for _, tmp in written:  # a failure part way: no temp file is left behind
                tmp.unlink(missing_ok=True)

    def _write(self, collection: str, item_id: str, media: KeptMedia, n: int, sync: bool) -> tuple[Path, Path]:
        """One item's file at a temp name (unique per process, thread and `n`); its final path and the temp path."""
        path = self._path(collection, item_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        preview, original = media.preview or b"", media.original or b""
        header = {"id": item_id, **media.record(), "preview_len": len(preview)}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode("utf-8") + b"\n")
            f.write(preview)
            f.write(original)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        return path, tmp

    @staticmethod
    def _header(f: Any) -> dict:
        return json.loads(f.readline())

    def get(self, collection: str, item_id: str, with_original: bool = False) -> KeptMedia | None:
        try:
            with open(self._path(collection, item_id), "rb") as f:
                record = self._header(f)
                size = record.pop("preview_len", 0)
                preview = f.read(size) if record.get("preview_type") else None
                original = f.read() if with_original and record.get("original_bytes") else None
        except FileNotFoundError:  # never kept, or deleted while being looked up
            return None
        record.pop("id", None)
        return KeptMedia(preview=preview, original=original, **record)

    def delete(self, collection: str, item_ids: Iterable[str]) -> None:
        for item_id in item_ids:
            self._path(collection, item_id).unlink(missing_ok=True)

    def drop(self, collection: str) -> None:
        shutil.rmtree(self.root / validate_collection_name(collection), ignore_errors=True)

    def ids(self, collection: str) -> set[str]:
        found = set()
        for path in (self.root / validate_collection_name(collection)).glob(f"*/*{self.SUFFIX}"):
            try:
                with open(path, "rb") as f:
                    found.add(self._header(f)["id"])
            except (FileNotFoundError, ValueError, KeyError):
                continue
        return found
