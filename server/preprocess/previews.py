"""Small, bounded previews of indexed media: what the search page shows and plays.

An image item gets a WebP thumbnail (longest side at most `thumbnail_px`, at most
`thumbnail_max_bytes`: quality is lowered first, then the size); an audio item gets its first
`audio_preview_s` seconds as mono OGG/Vorbis at no more than 22.05 kHz (at most
`audio_preview_max_bytes`: shortened until it fits); a text item keeps its first
TEXT_PREVIEW_CHARS characters. Bounds make the disk cost of a collection predictable: roughly
(thumbnail or preview bound) x items, whatever the sources weighed.

The input bytes were already decoded once by the embedding path (which enforces the size, pixel
and duration limits), so these functions only see media the server accepted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, ImageOps

from ..settings import MediaSettings

THUMBNAIL_TYPE = "image/webp"
AUDIO_PREVIEW_TYPE = "audio/ogg"
TEXT_TYPE = "text/plain; charset=utf-8"
TEXT_PREVIEW_CHARS = 2000
AUDIO_PREVIEW_MAX_RATE = 22_050  # enough to recognise a sound; halves the bytes of 44.1/48 kHz sources
_QUALITIES = (80, 65, 50, 35)


@dataclass(frozen=True)
class Preview:
    content_type: str
    data: bytes


def image_thumbnail(data: bytes, settings: MediaSettings) -> Preview:
    """A WebP thumbnail within the configured side and byte bounds (EXIF orientation applied)."""
    px = settings.thumbnail_px
    with Image.open(io.BytesIO(data)) as opened:
        w, h = opened.size
        scale = px / max(w, h, 1)
        # JPEG: decode straight at 1/2, 1/4 or 1/8 scale while still at least the thumbnail's size (several times faster)
        opened.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        image = ImageOps.exif_transpose(opened)
        image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info else "RGB")
    side = px
    while True:
        thumb = image.copy()
        thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in _QUALITIES:
            out = io.BytesIO()
            thumb.save(out, "WEBP", quality=quality, method=2)  # method 4+ is 3-7x slower for ~2% fewer bytes
            if out.tell() <= settings.thumbnail_max_bytes:
                return Preview(THUMBNAIL_TYPE, out.getvalue())
        if side <= 32:  # a 32 px WebP is a few hundred bytes; the byte cap is at least 4 KiB
            return Preview(THUMBNAIL_TYPE, out.getvalue())
        side = max(32, side * 3 // 4)


def audio_preview(data: bytes, settings: MediaSettings) -> Preview:
    """The first seconds of a recording as a small mono OGG/Vorbis file within the byte bound."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        rate = f.samplerate
        samples = f.read(frames=int(settings.audio_preview_s * rate), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    target = min(rate, AUDIO_PREVIEW_MAX_RATE)
    if target != rate:
        mono = soxr.resample(mono, rate, target, quality="HQ").astype(np.float32)
    mono = np.clip(mono, -1.0, 1.0)
    while True:
        out = io.BytesIO()
        sf.write(out, mono, target, format="OGG", subtype="VORBIS", compression_level=0.7)
        size = out.tell()
        if size <= settings.audio_preview_max_bytes or len(mono) <= target // 2:
            return Preview(AUDIO_PREVIEW_TYPE, out.getvalue())
        keep = int(len(mono) * settings.audio_preview_max_bytes / size * 0.9)
        mono = mono[: max(target // 2, keep)]


def text_preview(text: str) -> Preview:
    """A text item's first characters (the page shows them; the full text is kept as the original)."""
    short = text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"
    return Preview(TEXT_TYPE, short.encode("utf-8"))


def make_preview(modality: str, value: str | bytes, settings: MediaSettings) -> Preview:
    """The preview of one resolved input (text as str, image or audio as file bytes)."""
    if modality == "text":
        assert isinstance(value, str)
        return text_preview(value)
    assert isinstance(value, bytes)
    return image_thumbnail(value, settings) if modality == "image" else audio_preview(value, settings)


_AUDIO_MIME = {"WAV": "audio/wav", "WAVEX": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg", "AIFF": "audio/aiff"}


def original_type(modality: str, value: str | bytes) -> str:
    """The content type of a kept original, from its own bytes (the client's declared type may be vaguer)."""
    if modality == "text":
        return TEXT_TYPE
    assert isinstance(value, bytes)
    try:
        if modality == "image":
            with Image.open(io.BytesIO(value)) as image:
                return Image.MIME.get(image.format or "", "application/octet-stream")
        return _AUDIO_MIME.get(sf.info(io.BytesIO(value)).format, "application/octet-stream")
    except Exception:  # noqa: BLE001 - decoded fine for embedding; an odd container still gets kept, untyped
        return "application/octet-stream"
