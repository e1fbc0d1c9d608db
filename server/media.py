"""Media detection and limits: which tower a blob is for, and whether its size and encoding are acceptable.

The one place that knows media file types and per-item limits. Uploads, downloaded URLs, index
sources (CLI), the fine-tune data readers and the SDK (by a copied list, tested equal) all agree
through it. The declared type decides when it names a modality; untyped binary (octet-stream, no
type) falls back to the file extension and then to the first bytes. Framework-free: no FastAPI,
no HTTP; it raises the error table's `OmnivecError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import PurePath

from .errors import ErrorCode, OmnivecError

MEDIA_MODALITIES: tuple[str, ...] = ("image", "audio")
BINARY_TYPES = ("application/octet-stream", "binary/octet-stream", "")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
MEDIA_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + AUDIO_SUFFIXES
SUFFIXES: dict[str, tuple[str, ...]] = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES}
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


# ---------------------------------------------------------------------------------------------
# Checks on one item: declared type, size, base64 / data: URI decoding
# ---------------------------------------------------------------------------------------------

_DATA_URI_HEADER = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[\w.+-]+=[^;,]*)*(?P<b64>;base64)?$")
EXAMPLE_SUBTYPE = {"image": "png", "audio": "wav"}
SHRINK_HINT = {"image": "downscale or re-encode it", "audio": "trim, split or re-encode it"}
TOO_LARGE = {"image": ErrorCode.IMAGE_TOO_LARGE, "audio": ErrorCode.AUDIO_TOO_LARGE}
# Multipart forms: non-file fields a route accepts beside its file parts (flags, JSON `params`/`items`).
FORM_CONTROL_FIELDS = 8


def base64_length(max_bytes: int) -> int:
    """Longest base64 text (padding and a little whitespace included) that can decode to `max_bytes`."""
    return (max_bytes * 4) // 3 + 8


def check_content_type(declared: str | None, modality: str, label: str) -> None:
    """Refuse an upload or data URI whose declared type is clearly another kind of media."""
    if is_binary(declared) or declared_modality(declared) == modality:
        return
    raise OmnivecError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"{label} is declared as {mime_of(declared)!r}, not {modality}/*; send a {modality} file (or application/octet-stream)",
    )


def detect_modality(declared: str | None, filename: str | None, data: bytes, label: str) -> str:
    """Image or audio, for inputs that may be either: declared type, else file extension, else magic bytes.

    A declared type that is neither (text/plain, application/pdf) is refused (415) rather than guessed past.
    """
    if not (is_binary(declared) or declared_modality(declared)):
        kinds = " or ".join(f"{m}/*" for m in MEDIA_MODALITIES)
        raise OmnivecError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"{label} is declared as {mime_of(declared)!r}, not {kinds}; send an image or audio file (or application/octet-stream)",
        )
    return media_modality(declared, filename, data)


def decode_media_string(value: str, modality: str, label: str, max_bytes: int) -> bytes:
    """Base64 or `data:` URI -> bytes, enforcing the per-item size limit before and after decoding."""
    example = f"data:{modality}/{EXAMPLE_SUBTYPE.get(modality, 'png')};base64,"
    if not isinstance(value, str) or not value:
        raise OmnivecError(ErrorCode.INVALID_BASE64, f"{label} is empty: send base64 or a data: URI of a {modality} file")
    if value.startswith(("http://", "https://")):
        raise OmnivecError(
            ErrorCode.INVALID_REQUEST,
            f"{label} is a URL; /v1/embed takes base64, data: URIs or multipart uploads — download the file and send its bytes",
        )
    payload = value
    if value.startswith("data:"):
        header, comma, payload = value.partition(",")
        header_match = _DATA_URI_HEADER.match(header)
        if not comma or not header_match:
            raise OmnivecError(ErrorCode.INVALID_BASE64, f"{label} is a malformed data: URI; expected {example}<data>")
        if not header_match.group("b64"):
            raise OmnivecError(ErrorCode.INVALID_BASE64, f"{label}: only base64 data: URIs are accepted ({example}...)")
        check_content_type(header_match.group("mime"), modality, label)
    if len(payload) > base64_length(max_bytes):
        raise too_large(modality, f"{label} is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OmnivecError(
            ErrorCode.INVALID_BASE64, f"{label} is not valid base64 ({exc}); send standard base64 or a data: URI"
        ) from exc
    check_size(data, modality, label, max_bytes)
    return data


def check_size(data: bytes, modality: str, label: str, max_bytes: int) -> None:
    """413 `<modality>_too_large` when one encoded item is over its modality's limit."""
    if len(data) > max_bytes:
        raise too_large(modality, f"{label} is {len(data)} bytes, over the limit of {max_bytes}")


def too_large(modality: str, what: str) -> OmnivecError:
    return OmnivecError(TOO_LARGE.get(modality, ErrorCode.PAYLOAD_TOO_LARGE), f"{what}; {SHRINK_HINT.get(modality, 're-encode it')}")
