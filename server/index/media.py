"""Kept media: the bytes the server keeps of each indexed item, stored where the index lives.

One `MediaStore` protocol, two stores, one contract suite (`tests/server/test_media_stores.py`):
`SqliteMediaStore` (here) under the embedded engine's data dir, one SQLite database per collection
(a batch of items is one transaction and one fsync: one file per item capped bulk adds at
~600-2000 items/s on file creation and renames); and `qdrant_media.QdrantMediaStore`, points of a
hidden Qdrant collection, so every replica behind the same Qdrant serves the same media.
`IndexStore.media()` gives the one that goes with the engine; what to keep is decided above, in
`services/media_keeper.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol

from .store import is_collection_name, utc_now_iso, validate_collection_name

__all__ = ["KeptMedia", "MediaStore", "SqliteMediaStore"]

log = logging.getLogger("omnivec.media")


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

    def close(self) -> None: ...


class SqliteMediaStore:
    """Kept media in one SQLite database per collection (`<root>/<collection>.sqlite3`, WAL journal).

    A row holds an item's record (JSON), preview and original; `put_many` writes a batch in one
    transaction, committed with an fsync of the journal (synchronous=FULL), so an acknowledged add
    keeps its media through a crash or a power cut, and a reader sees an item whole, old or new.
    One connection per collection, shared by the server's threads under a lock (a lookup is a
    primary-key read of microseconds). Collections kept by 0.1's one-file-per-item store
    (`legacy_root/<collection>/`) are imported when the store is made (at server start), then removed.
    """

    SUFFIX = ".sqlite3"
    SCHEMA = "CREATE TABLE IF NOT EXISTS media (id TEXT PRIMARY KEY, record TEXT NOT NULL, preview BLOB, original BLOB)"

    def __init__(self, root: Path, legacy_root: Path | None = None) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()  # guards the two dicts below
        self._connections: dict[str, sqlite3.Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        if legacy_root is not None and legacy_root.is_dir():  # at startup, so no request waits for an import
            for legacy in sorted(d for d in legacy_root.iterdir() if d.is_dir() and is_collection_name(d.name)):
                connection = self._connection(legacy.name, create=True)
                assert connection is not None
                _import_legacy(connection, legacy, legacy.name)
            if not any(legacy_root.iterdir()):
                legacy_root.rmdir()

    def _collection_lock(self, collection: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(validate_collection_name(collection), threading.Lock())

    def _connection(self, collection: str, create: bool) -> sqlite3.Connection | None:
        """The collection's open database (caller holds its lock); None when it has none and `create` is off."""
        connection = self._connections.get(collection)
        if connection is not None:
            return connection
        path = self.root / f"{collection}{self.SUFFIX}"
        if not create and not path.exists():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)  # explicit transactions
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(self.SCHEMA)
        self._connections[collection] = connection
        return connection

    def put(self, collection: str, item_id: str, media: KeptMedia) -> None:
        self.put_many(collection, [(item_id, media)])

    def put_many(self, collection: str, items: list[tuple[str, KeptMedia]]) -> None:
        """A batch in one transaction (one fsync); a later item of the same id wins."""
        if not items:
            return
        rows = [(item_id, json.dumps(media.record()), media.preview, media.original) for item_id, media in items]
        with self._collection_lock(collection):
            connection = self._connection(collection, create=True)
            assert connection is not None
            with _transaction(connection):
                connection.executemany("INSERT OR REPLACE INTO media VALUES (?, ?, ?, ?)", rows)

    def get(self, collection: str, item_id: str, with_original: bool = False) -> KeptMedia | None:
        columns = "record, preview, original" if with_original else "record, preview, NULL"  # the original is not read unless asked for
        with self._collection_lock(collection):
            connection = self._connection(collection, create=False)
            row = connection.execute(f"SELECT {columns} FROM media WHERE id = ?", (item_id,)).fetchone() if connection else None
        if row is None:
            return None
        record = json.loads(row[0])
        return KeptMedia(preview=row[1], original=row[2], **record)

    def delete(self, collection: str, item_ids: Iterable[str]) -> None:
        ids = [(item_id,) for item_id in item_ids]
        with self._collection_lock(collection):
            connection = self._connection(collection, create=False)
            if connection is not None and ids:
                with _transaction(connection):
                    connection.executemany("DELETE FROM media WHERE id = ?", ids)

    def drop(self, collection: str) -> None:
        with self._collection_lock(collection):
            connection = self._connections.pop(collection, None)
            if connection is not None:
                connection.close()
            for suffix in ("", "-wal", "-shm"):
                (self.root / f"{collection}{self.SUFFIX}{suffix}").unlink(missing_ok=True)

    def ids(self, collection: str) -> set[str]:
        with self._collection_lock(collection):
            connection = self._connection(collection, create=False)
            return {row[0] for row in connection.execute("SELECT id FROM media")} if connection else set()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on an error (the connection runs in autocommit mode)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # also when COMMIT itself failed (disk full): never leave one open
            connection.execute("ROLLBACK")
        raise


def _import_legacy(connection: sqlite3.Connection, legacy: Path, collection: str) -> None:
    """Move a collection kept by the one-file-per-item store into its database, then remove the files.

    A file is `{record JSON}\\n` + preview + original. Runs before the server serves, so the database
    holds only rows of an earlier, interrupted import: INSERT OR IGNORE resumes it, and the files go
    only after the last commit."""
    imported = 0
    rows: list[tuple] = []
    for path in [*legacy.glob("*/*.media"), None]:  # None: the end, flush what is left
        if path is not None:
            try:
                with open(path, "rb") as f:
                    record = json.loads(f.readline())
                    item_id, preview_len = record.pop("id"), record.pop("preview_len", 0)
                    preview = f.read(preview_len) if record.get("preview_type") else None
                    original = f.read() if record.get("original_bytes") else None
            except (OSError, ValueError, KeyError) as exc:
                log.warning("kept media file %s could not be read (%s); skipped", path, exc)
                continue
            rows.append((item_id, json.dumps(record), preview, original))
        if rows and (path is None or len(rows) >= 1000):  # bounded memory for a large collection
            with _transaction(connection):
                connection.executemany("INSERT OR IGNORE INTO media VALUES (?, ?, ?, ?)", rows)
            imported, rows = imported + len(rows), []
    shutil.rmtree(legacy, ignore_errors=True)
    log.info("imported %d kept media files of collection %r from %s", imported, collection, legacy)
