"""Kept media: what the server keeps of each indexed item, and where.

For an item indexed from bytes the server keeps a bounded preview (a WebP thumbnail, the first
seconds of a recording as OGG/Vorbis, a text's first characters; see `preprocess/previews.py`)
and, when it is at most `media.original_max_bytes`, the original file too (texts always), so a
collection can later be re-embedded without its sources. For an item indexed from a URL it keeps
the URL: the bytes stay where they are. Keeping is a per-collection choice (`keep_media` at
creation, default on; collections created before it existed count as on).

One `MediaStore` protocol, two stores, one contract suite (`tests/server/test_media_stores.py`),
following the label-set stores:

* `FileMediaStore`: under `data_dir/media/<collection>/`, one file per item (a JSON record line,
  the preview, the original) named by the sha256 of the item id (ids are free-form strings),
  written to a temp name, fsynced and renamed. Used with the embedded Edge engine.
* `QdrantMediaStore`: one point per item in the hidden Qdrant collection `_omnivec_media`
  (payload: the record, bytes base64-encoded, payload kept on disk), so every replica behind the
  same Qdrant serves the same media. Its name starts with `_`, which no user collection can.

`MediaKeeper` is the glue the collection service calls: it makes the previews (off the event
loop) and stores, fetches and forgets them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from ..index.store import point_uuid, utc_now_iso, validate_collection_name
from ..preprocess.previews import make_preview, original_type
from ..settings import MediaSettings
from .inputs import RawInput, Resolved

if TYPE_CHECKING:  # pragma: no cover
    from ..index.qdrant import QdrantIndexStore

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

    def get(self, collection: str, item_id: str, with_original: bool = False) -> KeptMedia | None: ...

    def delete(self, collection: str, item_ids: Iterable[str]) -> None: ...

    def drop(self, collection: str) -> None: ...

    def ids(self, collection: str) -> set[str]: ...


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
        path = self._path(collection, item_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        preview, original = media.preview or b"", media.original or b""
        header = {"id": item_id, **media.record(), "preview_len": len(preview)}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode("utf-8") + b"\n")
            f.write(preview)
            f.write(original)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

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


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class QdrantMediaStore:
    """Kept media as points of a hidden Qdrant collection shared by every server on that Qdrant.

    Each point has a constant 1-d vector (Qdrant needs one), the record and base64 bytes as its
    payload (kept on disk by Qdrant), and an id derived from (collection, item id), so a put replaces.
    """

    COLLECTION = "_omnivec_media"
    _RECORD_FIELDS = ["collection", "item_id", "modality", "preview", "preview_type", "original_type", "original_bytes", "url", "etag", "updated_at"]

    def __init__(self, index: "QdrantIndexStore") -> None:
        self._index = index
        self._ready = False
        self._lock = threading.Lock()

    def _collection(self) -> str:
        """The media collection (and its `collection` keyword index), created on first use."""
        from qdrant_client import models

        if not self._ready:
            with self._lock, self._index.serialized():
                client = self._index.client
                if not client.collection_exists(self.COLLECTION):
                    try:
                        client.create_collection(
                            self.COLLECTION, vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT), on_disk_payload=True
                        )
                        with warnings.catch_warnings():  # local mode (tests) says indexes have no effect there; they do on a server
                            warnings.simplefilter("ignore", UserWarning)
                            client.create_payload_index(self.COLLECTION, "collection", models.PayloadSchemaType.KEYWORD)
                    except Exception:  # noqa: BLE001 - another replica created it first
                        if not client.collection_exists(self.COLLECTION):
                            raise
                self._ready = True
        return self.COLLECTION

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call on the media collection; recreated once if it vanished (Qdrant wiped or restored)."""
        for attempt in (0, 1):
            collection = self._collection()
            try:
                with self._index.serialized():
                    return getattr(self._index.client, method)(collection, *args, **kwargs)
            except Exception:
                with self._index.serialized():
                    gone = not self._index.client.collection_exists(collection)
                if not gone or attempt:
                    raise
                self._ready = False
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _point_id(collection: str, item_id: str) -> str:
        return point_uuid(f"{validate_collection_name(collection)}\x00{item_id}")

    @staticmethod
    def _collection_filter(collection: str) -> Any:
        from qdrant_client import models

        return models.Filter(must=[models.FieldCondition(key="collection", match=models.MatchValue(value=collection))])

    def put(self, collection: str, item_id: str, media: KeptMedia) -> None:
        from qdrant_client import models

        payload = {"collection": collection, "item_id": item_id, **media.record(), "preview": _b64(media.preview), "original": _b64(media.original)}
        self._call("upsert", [models.PointStruct(id=self._point_id(collection, item_id), vector=[1.0], payload=payload)], wait=True)

    def get(self, collection: str, item_id: str, with_original: bool = False) -> KeptMedia | None:
        fields = self._RECORD_FIELDS + (["original"] if with_original else [])
        found = self._call("retrieve", [self._point_id(collection, item_id)], with_payload=fields)
        if not found:
            return None
        record = dict(found[0].payload or {})
        record.pop("collection", None), record.pop("item_id", None)
        preview, original = _unb64(record.pop("preview", None)), _unb64(record.pop("original", None))
        return KeptMedia(preview=preview, original=original, **record)

    def delete(self, collection: str, item_ids: Iterable[str]) -> None:
        from qdrant_client import models

        ids = [self._point_id(collection, i) for i in item_ids]
        if ids:
            self._call("delete", models.PointIdsList(points=ids), wait=True)

    def drop(self, collection: str) -> None:
        from qdrant_client import models

        self._call("delete", models.FilterSelector(filter=self._collection_filter(validate_collection_name(collection))), wait=True)

    def ids(self, collection: str) -> set[str]:
        found: set[str] = set()
        offset = None
        while True:
            points, offset = self._call(
                "scroll", scroll_filter=self._collection_filter(validate_collection_name(collection)), limit=512, offset=offset, with_payload=["item_id"]
            )
            found.update(str((p.payload or {}).get("item_id")) for p in points)
            if offset is None:
                return found


class MediaKeeper:
    """Makes and keeps items' media as they are indexed, and forgets it when they go."""

    def __init__(self, store: MediaStore, settings: MediaSettings) -> None:
        self.store = store
        self.settings = settings

    def make(self, raw: RawInput, resolved: Resolved) -> KeptMedia | None:
        """What to keep of one indexed input (None: nothing could be made; indexing goes on)."""
        if raw.kind == "url":
            assert isinstance(raw.value, str)
            return KeptMedia(modality=resolved.modality, url=raw.value)
        try:
            preview = make_preview(resolved.modality, resolved.value, self.settings)
        except Exception as exc:  # noqa: BLE001 - the model took it; a preview is a nicety, never a reason to fail
            log.warning("no preview kept for %s: %s", resolved.label, exc)
            return None
        value = resolved.value
        original = value.encode("utf-8") if isinstance(value, str) else value
        keep_original = resolved.modality == "text" or len(original) <= self.settings.original_max_bytes
        return KeptMedia(
            modality=resolved.modality,
            preview=preview.data,
            preview_type=preview.content_type,
            original=original if keep_original else None,
            original_type=original_type(resolved.modality, value) if keep_original else None,
        )

    def make_all(self, inputs: list[tuple[RawInput, Resolved]]) -> list[KeptMedia | None]:
        """The media of a batch (blocking: the collection service runs it beside the embedding)."""
        return [self.make(raw, resolved) for raw, resolved in inputs]

    def put_all(self, collection: str, items: list[tuple[str, KeptMedia | None]]) -> None:
        """Store each item's media; an item with none loses what an earlier version of it kept."""
        for item_id, media in items:
            if media is not None:
                self.store.put(collection, item_id, media)
        self.store.delete(collection, [item_id for item_id, media in items if media is None])


def media_store(settings: Any, index: Any) -> MediaStore:
    """Media lives where the index does: in the Qdrant server every replica shares, or in the data dir."""
    from ..index.qdrant import QdrantIndexStore

    if isinstance(index, QdrantIndexStore):
        return QdrantMediaStore(index)
    return FileMediaStore(settings.media_dir)
