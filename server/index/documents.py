"""`FileDocuments`: small named JSON documents as files in one directory (the embedded engine's kind).

Each document is written to a temp file, fsynced and renamed, so a crash never leaves half a file.
Names are checked by the caller (collection-name rules), which keeps them safe as file names.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..errors import ErrorCode
from .errors import IndexStoreError

__all__ = ["FileDocuments"]


class FileDocuments:
    """`DocumentStore` over `root/<name>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def put(self, name: str, document: dict) -> None:
        path = self._path(name)
        try:
            with self._lock:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".json.tmp")
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(document, f, ensure_ascii=False, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
        except OSError as exc:
            raise _storage_error(path, exc) from exc

    def get(self, name: str) -> dict | None:
        path = self._path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise _storage_error(path, exc) from exc

    def delete(self, name: str) -> bool:
        with self._lock:
            try:
                self._path(name).unlink()
            except FileNotFoundError:
                return False
        return True

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        docs = []
        for path in sorted(self.root.glob("*.json")):
            doc = self.get(path.stem)
            if doc is not None:  # else deleted between the listing and the read
                docs.append(doc)
        return docs


def _storage_error(path: Path, exc: Exception) -> IndexStoreError:
    return IndexStoreError(f"cannot use {path} ({exc.__class__.__name__}: {exc}); check the data directory's free space and permissions", ErrorCode.STORAGE_FAILED)
