"""Turning request fields into media bytes: base64, data URIs, uploads — with size and type checks."""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import ErrorCode, OmnivecError

_DATA_URI_HEADER = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[\w.+-]+=[^;,]*)*(?P<b64>;base64)?$")
ACCEPTED_UPLOAD_TYPES = ("application/octet-stream", "")


def check_content_type(declared: str | None, modality: str, label: str) -> None:
    """Refuse an upload or data URI whose declared type is clearly another kind of media."""
    mime = (declared or "").split(";")[0].strip().lower()
    if mime in ACCEPTED_UPLOAD_TYPES or mime.startswith(f"{modality}/"):
        return
    raise OmnivecError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"{label} is declared as {mime!r}, not {modality}/*; send a {modality} file (or application/octet-stream)",
    )


def decode_media_string(value: str, modality: str, label: str, max_bytes: int) -> bytes:
    """Base64 or `data:` URI -> bytes, enforcing the per-item size limit before and after decoding."""
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
            raise OmnivecError(ErrorCode.INVALID_BASE64, f"{label} is a malformed data: URI; expected data:{modality}/png;base64,<data>")
        if not header_match.group("b64"):
            raise OmnivecError(ErrorCode.INVALID_BASE64, f"{label}: only base64 data: URIs are accepted (data:{modality}/png;base64,...)")
        check_content_type(header_match.group("mime"), modality, label)
    if len(payload) > (max_bytes * 4) // 3 + 8:
        raise OmnivecError(
            ErrorCode.IMAGE_TOO_LARGE if modality == "image" else ErrorCode.PAYLOAD_TOO_LARGE,
            f"{label} is over the limit of {max_bytes} bytes; downscale or re-encode it",
        )
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
        raise OmnivecError(
            ErrorCode.IMAGE_TOO_LARGE if modality == "image" else ErrorCode.PAYLOAD_TOO_LARGE,
            f"{label} is {len(data)} bytes, over the limit of {max_bytes}; downscale or re-encode it",
        )
