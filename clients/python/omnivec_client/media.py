"""Turning files and bytes into request fields, and the content ids the server gives them."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Union

MediaSource = Union[str, "os.PathLike[str]", bytes]
"""A file path (str or Path) or the file's bytes."""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def read_media(source: MediaSource) -> bytes:
    """The bytes of a path or the bytes themselves; a missing file names itself."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (images and audio are given as paths or bytes)") from None


def modality_of(path: str | os.PathLike[str]) -> str:
    """audio for audio file extensions, image otherwise (the server's decoder names any problem)."""
    return "audio" if Path(path).suffix.lower() in AUDIO_SUFFIXES else "image"


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def content_id(modality: str, value: str | bytes) -> str:
    """The id the server gives an item without one: sha256 over modality, NUL, content.

    Computing it here lets `add` ask which items are already stored and skip them before sending
    their bytes (resumable indexing). Must match `omnivec.server.ids.content_id` (tested).
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(modality.encode("ascii") + b"\0" + data).hexdigest()
