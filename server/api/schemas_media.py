"""Request and response models of kept media (the items media route and the `keep_media` option)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .schemas import CreateCollectionRequest
from .schemas_vectors import VectorOptionsIn


class CreateCollectionIn(CreateCollectionRequest, VectorOptionsIn):
    """A new collection; `keep_media` decides whether its items' previews (and small originals) are kept."""

    keep_media: bool = Field(
        True,
        description="keep each item's preview (image: WebP thumbnail; audio: the first seconds as OGG/Vorbis; text: its start) and, "
        "up to media.original_max_bytes, its original, served at GET /v1/collections/{name}/media/{id}; URL items keep their URL",
    )


class MediaUrlOut(BaseModel):
    """A URL item's kept media: the URL it was indexed from (the server keeps no copy)."""

    id: str
    modality: Literal["image", "audio"]
    url: str
