"""Item ids derived from content, shared by the server and the `omnivec index` client.

The client computes the same id before uploading, so a resumed run can ask the server which items
it already has and skip them without sending their bytes again.
"""

from __future__ import annotations

import hashlib


def content_id(modality: str, value: str | bytes) -> str:
    """sha256 over the modality and the content (text as UTF-8, image file bytes), in hex.

    The same content always gets the same id, so indexing it again replaces the point instead of
    duplicating it; the modality is part of the hash so a text and an image never collide.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(modality.encode("ascii") + b"\0" + data).hexdigest()
