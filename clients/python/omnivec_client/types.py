"""What the client takes (Item) and gives back (results as small dataclasses over the JSON)."""

from __future__ import annotations

import base64
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .media import MediaSource, modality_of

MODALITIES = ("text", "image", "audio")


@dataclass(frozen=True)
class Item:
    """One thing to index: exactly one of `text`, `image` / `audio` (a path or bytes) or `url`
    (fetched by the server), with an optional `id` (default: a hash of the content, so indexing the
    same content again replaces it) and a filterable `payload`."""

    text: str | None = None
    image: MediaSource | None = None
    audio: MediaSource | None = None
    url: str | None = None
    id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [k for k in ("text", "image", "audio", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an Item needs exactly one of text, image, audio or url (got {given or 'none'})")

    @classmethod
    def from_file(cls, path: str | Path, *, id: str | None = None, **payload: Any) -> "Item":
        """An image or audio file by its extension, with `path` in its payload so hits say which file."""
        kind = modality_of(path)
        return cls(**{kind: Path(path)}, id=id, payload={"path": str(path), **payload})

    @property
    def modality(self) -> str:
        return next(k for k in ("text", "image", "audio", "url") if getattr(self, k) is not None)


def decode_vector(value: list[float] | str) -> list[float]:
    """A vector from JSON floats or base64 little-endian float32."""
    if isinstance(value, list):
        return [float(x) for x in value]
    floats = array("f", base64.b64decode(value))
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tolist()


@dataclass(frozen=True)
class AudioWindow:
    """One window of an audio input (with audio_windows=True): its span and its own unit vector."""

    start_s: float
    end_s: float
    vector: list[float]


@dataclass(frozen=True)
class Embeddings:
    """Unit vectors in request order (texts, then images, then audios), from one model's space."""

    model: str
    space_id: str
    dim: int
    vectors: list[list[float]]
    modalities: list[str]
    truncated: list[bool | None]
    durations_s: list[float | None]
    warnings: list[str]
    windows: list[list[AudioWindow] | None] = field(default_factory=list)  # per input; audio with audio_windows=True

    def __len__(self) -> int:
        return len(self.vectors)

    def to_numpy(self) -> Any:
        """An (n, dim) float32 array (needs numpy: pip install 'omnivec-client[numpy]')."""
        try:
            import numpy as np
        except ImportError:
            raise ImportError("to_numpy needs numpy: pip install 'omnivec-client[numpy]'") from None
        return np.asarray(self.vectors, dtype=np.float32).reshape(len(self.vectors), self.dim)

    @classmethod
    def from_responses(cls, responses: list[dict[str, Any]]) -> "Embeddings":
        rows = [row for r in responses for row in r["data"]]
        first = responses[0] if responses else {"model": "", "space_id": "", "dim": 0}
        return cls(
            model=first["model"],
            space_id=first["space_id"],
            dim=first["dim"],
            vectors=[decode_vector(row["embedding"]) for row in rows],
            modalities=[row["modality"] for row in rows],
            truncated=[row.get("truncated") for row in rows],
            durations_s=[row.get("duration_s") for row in rows],
            warnings=[w for r in responses for w in r.get("warnings", [])],
            windows=[
                [AudioWindow(w["start_s"], w["end_s"], decode_vector(w["embedding"])) for w in row["windows"]] if row.get("windows") else None
                for row in rows
            ],
        )


@dataclass(frozen=True)
class Hit:
    """One search result: cosine `score`, the item's modality and payload."""

    id: str
    score: float
    modality: str | None
    payload: dict[str, Any] | None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Hit":
        return cls(id=row["id"], score=row["score"], modality=row.get("modality"), payload=row.get("payload"))


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float
    cosine: float


@dataclass(frozen=True)
class Classification:
    """The top labels of one input, best first (softmax scores sum to 1 over all labels)."""

    labels: list[LabelScore]

    @property
    def best(self) -> LabelScore:
        return self.labels[0]

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Classification":
        return cls(labels=[LabelScore(l["label"], l["score"], l["cosine"]) for l in row["labels"]])


@dataclass(frozen=True)
class Collection:
    name: str
    dim: int
    space_id: str
    model: str
    count: int
    matches_model: bool
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, Any] | None = None  # quantization, dimensions, on_disk, hnsw (servers from before: None)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Collection":
        keys = ("name", "dim", "space_id", "model", "count", "matches_model", "description", "extra", "vectors", "warnings")
        return cls(**{k: row[k] for k in keys if k in row})


@dataclass(frozen=True)
class StoredItem:
    id: str
    modality: str | None
    payload: dict[str, Any]
    vector: list[float] | None = None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "StoredItem":
        return cls(id=row["id"], modality=row.get("modality"), payload=row.get("payload") or {}, vector=row.get("vector"))


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: list[str]
    templates: list[str] | None
    description: str

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "LabelSet":
        return cls(name=row["name"], labels=row["labels"], templates=row.get("templates"), description=row.get("description", ""))


@dataclass(frozen=True)
class ItemError:
    """An item the server refused (the others in its request were indexed)."""

    index: int  # position in the items given to `add`
    id: str | None
    code: str
    message: str


@dataclass
class AddResult:
    """What `add` did: ids per given item (None where it failed), how many were sent and indexed,
    skipped as already stored, and the per-item errors."""

    ids: list[str | None] = field(default_factory=list)
    indexed: int = 0
    skipped: int = 0
    errors: list[ItemError] = field(default_factory=list)
