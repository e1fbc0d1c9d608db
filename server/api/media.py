"""Turning request fields into media bytes: base64, data URIs, uploads — with size and type checks."""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import ErrorCode, OmnivecError
from ..mediatype import MEDIA_MODALITIES, declared_modality, is_binary, media_modality, mime_of

_DATA_URI_HEADER = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[\w.+-]+=[^;,]*)*(?P<b64>;base64)?$")
EXAMPLE_SUBTYPE = {"image": "png", "audio": "wav"}
SHRINK_HINT = {"image": "downscale or re-encode it", "audio": "trim, split or re-encode it"}


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
    if len(payload) > (max_bytes * 4) // 3 + 8:
        raise _too_large(modality, f"{label} is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OmnivecError(
            ErrorCode.INVALID_BASE64, f"{label} is not valid base64 ({exc}); send standard base64 or a data: URI"
        ) from exc
    check_size(data, modality, label, max_bytes)
    return data


def check_size(data: bytes, modality: str, label: str, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise _too_large(modality, f"{label} is {len(data)} bytes, over the limit of {max_bytes}")


def _too_large(modality: str, what: str) -> OmnivecError:
    code = ErrorCode.IMAGE_TOO_LARGE if modality == "image" else ErrorCode.PAYLOAD_TOO_LARGE
    return OmnivecError(code, f"{what}; {SHRINK_HINT.get(modality, 're-encode it')}")
