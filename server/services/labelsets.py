"""Named label sets for zero-shot classification, and where they are kept.

One `LabelSetStore` protocol, two stores, one contract suite (`tests/server/test_labelset_stores.py`):

* `FileLabelSetStore`: one JSON file per set under `data_dir/labelsets/` (written to a temp file,
  fsynced, renamed, so a crash never leaves half a file). Used with the embedded Edge engine,
  whose single server process owns the data dir anyway.
* `QdrantLabelSetStore`: one point per set in the Qdrant collection `_omnivec_labelsets`. Used with
  the qdrant engine, so every replica behind the same Qdrant server sees the same sets. The name
  starts with `_`, which no user collection can, and carries no omnivec collection metadata, so
  the index layer never lists, serves or deletes it.

Names follow the collection-name rules, which also keeps them safe as file names.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ErrorCode, OmnivecError
from ..index.store import InvalidRequest, point_uuid, utc_now_iso, validate_collection_name
from .zero_shot import check_labels, check_templates

if TYPE_CHECKING:  # pragma: no cover
    from ..index.qdrant import QdrantIndexStore


@dataclass
class LabelSet:
    name: str
    labels: list[str]
    templates: list[str] | None = None
    description: str = ""
    updated_at: str = field(default_factory=utc_now_iso)

    @classmethod
    def checked(cls, name: str, labels: list[str], templates: list[str] | None, description: str) -> "LabelSet":
        """A new set, refused with a 4xx when its name, labels or templates are unusable."""
        return cls(name=_check_name(name), labels=check_labels(labels), templates=check_templates(templates), description=description)

    @classmethod
    def from_dict(cls, raw: dict) -> "LabelSet":
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class LabelSetStore(Protocol):
    """Create-or-replace, read, delete and list named label sets (404 labelset_not_found when missing)."""

    def put(self, name: str, labels: list[str], templates: list[str] | None = None, description: str = "") -> LabelSet: ...

    def get(self, name: str) -> LabelSet: ...

    def delete(self, name: str) -> None: ...

    def list(self) -> list[LabelSet]: ...


def _check_name(name: str) -> str:
    try:
        return validate_collection_name(name)
    except InvalidRequest as exc:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, str(exc).replace("collection name", "label set name")) from exc


def _not_found(name: str) -> OmnivecError:
    return OmnivecError(ErrorCode.LABELSET_NOT_FOUND, f"label set {name!r} does not exist; create it with PUT /v1/labelsets/{name}")


class FileLabelSetStore:
    """Label sets as JSON files in one directory (the embedded engine's data dir)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.root / f"{_check_name(name)}.json"

    def put(self, name: str, labels: list[str], templates: list[str] | None = None, description: str = "") -> LabelSet:
        labelset = LabelSet.checked(name, labels, templates, description)
        path = self._path(name)
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(asdict(labelset), f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return labelset

    def get(self, name: str) -> LabelSet:
        try:
            return LabelSet.from_dict(json.loads(self._path(name).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise _not_found(name) from None

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                raise _not_found(name) from None

    def list(self) -> list[LabelSet]:
        if not self.root.is_dir():
            return []
        sets = []
        for path in sorted(self.root.glob("*.json")):
            try:
                sets.append(self.get(path.stem))
            except OmnivecError as exc:  # deleted between the listing and the read
                if exc.code != ErrorCode.LABELSET_NOT_FOUND:
                    raise
        return sets


class QdrantLabelSetStore:
    """Label sets as points of a Qdrant collection shared by every server on that Qdrant.

    Each point has a constant 1-d vector (Qdrant needs one) and the set as its payload; its id is
    derived from the set's name, so a put replaces.
    """

    COLLECTION = "_omnivec_labelsets"

    def __init__(self, index: "QdrantIndexStore") -> None:
        self._index = index
        self._ready = False
        self._lock = threading.Lock()

    def _collection(self) -> str:
        """The label-set collection, created on first use."""
        from qdrant_client import models

        if not self._ready:
            with self._lock, self._index.serialized():
                client = self._index.client
                if not client.collection_exists(self.COLLECTION):
                    try:
                        client.create_collection(self.COLLECTION, vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT))
                    except Exception:  # noqa: BLE001 - another replica created it first
                        if not client.collection_exists(self.COLLECTION):
                            raise
                self._ready = True
        return self.COLLECTION

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call on the label-set collection; if the collection vanished (Qdrant wiped
        or restored from an older snapshot), create it again and retry once."""
        collection = self._collection()
        try:
            with self._index.serialized():
                return getattr(self._index.client, method)(collection, *args, **kwargs)
        except Exception:
            with self._index.serialized():
                gone = not self._index.client.collection_exists(collection)
            if not gone:
                raise
            self._ready = False
            collection = self._collection()
            with self._index.serialized():
                return getattr(self._index.client, method)(collection, *args, **kwargs)

    def put(self, name: str, labels: list[str], templates: list[str] | None = None, description: str = "") -> LabelSet:
        from qdrant_client import models

        labelset = LabelSet.checked(name, labels, templates, description)
        point = models.PointStruct(id=point_uuid(labelset.name), vector=[1.0], payload=asdict(labelset))
        self._call("upsert", [point], wait=True)
        return labelset

    def get(self, name: str) -> LabelSet:
        found = self._call("retrieve", [point_uuid(_check_name(name))], with_payload=True)
        if not found:
            raise _not_found(name)
        return LabelSet.from_dict(found[0].payload or {})

    def delete(self, name: str) -> None:
        from qdrant_client import models

        self.get(name)  # 404 when missing
        self._call("delete", models.PointIdsList(points=[point_uuid(name)]), wait=True)

    def list(self) -> list[LabelSet]:
        sets: list[LabelSet] = []
        offset = None
        while True:
            points, offset = self._call("scroll", limit=256, offset=offset, with_payload=True)
            sets += [LabelSet.from_dict(p.payload or {}) for p in points]
            if offset is None:
                return sorted(sets, key=lambda s: s.name)
