"""Inputs given by value or by reference, resolved and embedded the same way everywhere.

Indexing, search and classification all take `{"text": ...}`, `{"image" | "audio": base64 | data: URI}`,
`{"url": ...}` (an image or audio file the server downloads; its served type picks the tower) or an
uploaded file (already read into bytes, its modality decided by the route). This module turns those
into what the towers take, and embeds a batch while keeping one bad input from failing the others
(indexing reports errors per item; queries raise the first one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ErrorCode, OmnivecError
from ..fetch import UrlFetcher
from ..media import MEDIA_MODALITIES, check_size, decode_media_string
from ..settings import LimitsSettings
from .embedding import EmbeddingService

InputKind = Literal["text", "image", "audio", "url"]
Modality = Literal["text", "image", "audio"]
TOWER_ORDER: tuple[Modality, ...] = ("text", "image", "audio")
# Errors that concern the server as a whole, not one input: never reported per item.
REQUEST_LEVEL = {ErrorCode.OVERLOADED, ErrorCode.NOT_READY}


@dataclass
class RawInput:
    """One input as the client gave it. Image/audio values are base64/data: URI strings, or bytes
    already read from a multipart part."""

    kind: InputKind
    value: str | bytes
    label: str  # how messages name it, e.g. "items[3].url"


@dataclass
class Resolved:
    """An input ready for a tower: text as str, image or audio as encoded file bytes."""

    modality: Modality
    value: str | bytes
    label: str


class InputResolver:
    """Decodes base64 and downloads URLs (through the guarded fetcher), checking their sizes; bytes arrive checked."""

    def __init__(self, fetcher: UrlFetcher, limits: LimitsSettings) -> None:
        self.fetcher = fetcher
        self.limits = limits

    async def resolve(self, raw: RawInput) -> Resolved:
        if raw.kind == "text":
            if not isinstance(raw.value, str) or not raw.value.strip():
                raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{raw.label} is empty; give the text to embed")
            return Resolved("text", raw.value, raw.label)
        if raw.kind == "url":
            assert isinstance(raw.value, str)
            modality, data = await self.fetcher.fetch_media(raw.value, raw.label, MEDIA_MODALITIES)
            check_size(data, modality, raw.label, self.limits.max_bytes(modality))
            return Resolved(modality, data, raw.label)  # type: ignore[arg-type]
        if isinstance(raw.value, bytes):  # checked where it came in: an upload capped while read (api/bodies.read_upload), a kept original, a demo file
            return Resolved(raw.kind, raw.value, raw.label)
        max_bytes = self.limits.max_bytes(raw.kind)
        if isinstance(raw.value, str) and raw.value.startswith(("http://", "https://")):
            raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{raw.label} is a URL; pass it as {{\"url\": ...}} instead of \"{raw.kind}\"")
        return Resolved(raw.kind, decode_media_string(raw.value, raw.kind, raw.label, max_bytes), raw.label)

    async def resolve_each(self, raws: list[RawInput]) -> list[Resolved | OmnivecError]:
        """Resolve concurrently (downloads overlap); a failing input yields its error in place."""
        results = await asyncio.gather(*(self.resolve(r) for r in raws), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, OmnivecError):
                raise result
        return results  # type: ignore[return-value]

    async def resolve_all(self, raws: list[RawInput]) -> list[Resolved]:
        """Resolve for a query: the first failing input fails the request."""
        results = await self.resolve_each(raws)
        for result in results:
            if isinstance(result, OmnivecError):
                raise result
        return results  # type: ignore[return-value]


async def _embed_group(service: EmbeddingService, modality: str, items: list[Resolved]) -> list[np.ndarray | OmnivecError]:
    async def embed(group: list[Resolved]) -> np.ndarray:
        values = [r.value for r in group]
        labels = [r.label for r in group]
        if modality == "text":
            return (await service.embed_texts(values, labels=labels)).vectors  # type: ignore[arg-type]
        if modality == "audio":
            return (await service.embed_audios(values, labels=labels)).vectors  # type: ignore[arg-type]
        return await service.embed_images(values, labels=labels)  # type: ignore[arg-type]

    try:  # fast path: the whole group in one call, exactly like /v1/embed
        return list(await embed(items))
    except OmnivecError as exc:
        if exc.code in REQUEST_LEVEL:
            raise
        if len(items) == 1:
            return [exc]
    # One input broke the batch: embed one by one (the batching runner still merges them).
    singles = await asyncio.gather(*(embed([r]) for r in items), return_exceptions=True)
    out: list[np.ndarray | OmnivecError] = []
    for result in singles:
        if isinstance(result, OmnivecError) and result.code in REQUEST_LEVEL:
            raise result
        if isinstance(result, BaseException) and not isinstance(result, OmnivecError):
            raise result
        out.append(result if isinstance(result, OmnivecError) else result[0])
    return out


async def embed_each(service: EmbeddingService, items: list[Resolved]) -> list[np.ndarray | OmnivecError]:
    """Unit vectors in input order; an input the model cannot take yields its error in place."""
    out: list[np.ndarray | OmnivecError | None] = [None] * len(items)
    groups = [(m, [i for i, r in enumerate(items) if r.modality == m]) for m in TOWER_ORDER]
    groups = [(m, idx) for m, idx in groups if idx]
    results = await asyncio.gather(*(_embed_group(service, m, [items[i] for i in idx]) for m, idx in groups))
    for (_, idx), vectors in zip(groups, results):
        for i, vector in zip(idx, vectors):
            out[i] = vector
    return out  # type: ignore[return-value]


async def embed_all(service: EmbeddingService, items: list[Resolved]) -> np.ndarray:
    """Unit vectors (n, dim) for a query: the first failing input fails the request."""
    results = await embed_each(service, items)
    for result in results:
        if isinstance(result, OmnivecError):
            raise result
    return np.stack(results) if results else np.zeros((0, service.manifest.embed_dim), np.float32)  # type: ignore[arg-type]
