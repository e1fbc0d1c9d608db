"""Which tower a blob of media is for: image or audio, from its declared type, file name or magic bytes.

Uploads, downloaded URLs and index sources can carry either kind. The declared type decides
when it names one; untyped binary (octet-stream, no type) falls back to the file extension and
then to the first bytes. Kept free of web-framework imports: the fetcher and the CLI use it too.
"""

from __future__ import annotations

from pathlib import PurePath

MEDIA_MODALITIES: tuple[str, ...] = ("image", "audio")
BINARY_TYPES = ("application/octet-stream", "binary/octet-stream", "")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3")
# Declared types outside image/* and audio/* that still name one of them unambiguously.
TYPE_ALIASES = {"application/ogg": "audio"}


def mime_of(declared: str | None) -> str:
    """`Content-Type` value -> bare lower-case mime ('' when absent)."""
    return (declared or "").split(";")[0].strip().lower()


def is_binary(declared: str | None) -> bool:
    """Untyped: the sender did not say what the bytes are."""
    return mime_of(declared) in BINARY_TYPES


def declared_modality(declared: str | None) -> str | None:
    """'image' for image/*, 'audio' for audio/* (and aliases), else None."""
    mime = mime_of(declared)
    kind = mime.split("/")[0]
    return kind if kind in MEDIA_MODALITIES and "/" in mime else TYPE_ALIASES.get(mime)


def suffix_modality(filename: str | None) -> str | None:
    """From the file extension; None for an unknown or missing one."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return None


def sniff_modality(data: bytes) -> str | None:
    """From magic bytes: RIFF/WAVE, fLaC, OggS, ID3 or an MP3 frame sync; PNG, JPEG, GIF, RIFF/WEBP, BMP."""
    head = data[:12]
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio", b"WEBP": "image"}.get(head[8:12])
    if head.startswith((b"fLaC", b"OggS", b"ID3")) or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    return None


def media_modality(declared: str | None, filename: str | None, data: bytes, default: str = "image") -> str:
    """Declared type, then extension, then magic bytes; `default` when nothing tells (the decoder then explains)."""
    return declared_modality(declared) or suffix_modality(filename) or sniff_modality(data) or default
