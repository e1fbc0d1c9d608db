"""`QdrantMediaStore`: kept media as points of the hidden Qdrant collection `_omnivec_media`.

The collection is a `HiddenCollection` (created on first use, recreated if it vanishes, calls
translated into the error table), with payloads on disk and a keyword index on `collection`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Iterable

from qdrant_client import models

from .media import KeptMedia
from .qdrant_hidden import HiddenCollection
from .store import point_uuid, validate_collection_name

if TYPE_CHECKING:  # pragma: no cover
    from .qdrant import QdrantIndexStore

__all__ = ["QdrantMediaStore"]


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
        self._call = HiddenCollection(index, self.COLLECTION, on_disk_payload=True, keyword_fields=("collection",)).call

    @staticmethod
    def _point_id(collection: str, item_id: str) -> str:
        return point_uuid(f"{validate_collection_name(collection)}\x00{item_id}")

    @staticmethod
    def _collection_filter(collection: str) -> Any:
        return models.Filter(must=[models.FieldCondition(key="collection", match=models.MatchValue(value=collection))])

    def put(self, collection: str, item_id: str, media: KeptMedia) -> None:
        self.put_many(collection, [(item_id, media)])

    def put_many(self, collection: str, items: list[tuple[str, KeptMedia]]) -> None:
        """One upsert for a batch of items (a later item of the same id wins, as in one Qdrant upsert)."""
        points = {
            self._point_id(collection, item_id): {"collection": collection, "item_id": item_id, **media.record(), "preview": _b64(media.preview), "original": _b64(media.original)}
            for item_id, media in items
        }
        if points:
            self._call("upsert", [models.PointStruct(id=pid, vector=[1.0], payload=payload) for pid, payload in points.items()], wait=True)

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
        ids = [self._point_id(collection, i) for i in item_ids]
        if ids:
            self._call("delete", models.PointIdsList(points=ids), wait=True)

    def drop(self, collection: str) -> None:
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

    def close(self) -> None:
        """Nothing of its own to release: the index store owns the client."""
