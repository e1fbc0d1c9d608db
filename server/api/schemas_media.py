"""Request and response models of kept media (the items media route and the `keep_media` option)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class ReembedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="the loaded model (GET /v1/models) whose space the collection moves into")


class ReembedItemError(BaseModel):
    id: str
    code: str = Field(description="the error table's code, e.g. media_not_found (nothing of the item was kept) or url_fetch_failed")
    message: str


class ReembedOut(BaseModel):
    """A collection's re-embed: progress, then the swap (the name points to the new collection when `state` is done)."""

    collection: str
    model: str
    space_id: str = Field(description="the target space")
    state: Literal["running", "done", "failed"]
    done: int = Field(description="items read from the old collection so far")
    total: int = Field(description="items in the old collection (final count once done)")
    errors: list[ReembedItemError] = Field(description="items that could not be re-embedded (at most 1000 listed)")
    from_preview: int = Field(0, description="items re-embedded from their kept preview because the original was over media.original_max_bytes")
    building: str = Field(description="the physical collection being built; the name points to it once done")
    previous: str = Field(description="what the old collection is reachable as once done (delete it when no longer needed)")
    message: str | None = Field(None, description="why the job failed, or what it waits for")
