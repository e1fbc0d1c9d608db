"""What the server keeps of each indexed item: a bounded preview and, when small, the original.

For an item indexed from bytes the server keeps a bounded preview (a WebP thumbnail, the first
seconds of a recording as OGG/Vorbis, a text's first characters; see `preprocess/previews.py`)
and, when it is at most `media.original_max_bytes`, the original file too (texts always), so a
collection can later be re-embedded without its sources. For an item indexed from a URL it keeps
the URL: the bytes stay where they are. Keeping is a per-collection choice (`keep_media` at
creation, default on; collections created before it existed count as on). Where the bytes are
stored is the index layer's business (`IndexStore.media()`).
"""

from __future__ import annotations

import logging

from ..index.media import KeptMedia, MediaStore
from ..preprocess.previews import make_preview, original_type
from ..settings import MediaSettings
from .inputs import RawInput, Resolved

__all__ = ["KeptMedia", "MediaKeeper"]

log = logging.getLogger("omnivec.media")


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
        self.store.put_many(collection, [(item_id, media) for item_id, media in items if media is not None])  # one flush for the batch
        self.store.delete(collection, [item_id for item_id, media in items if media is None])
