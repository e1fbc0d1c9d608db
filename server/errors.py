"""The one error table: every failure a client can cause maps to a code, an HTTP status and a fix.

Services raise `OmnivecError(code, message)`; the API renders it as
`{"error": {"code": ..., "message": ..., "status": ...}}`. Keeping the table in one place means
the status codes and wording stay consistent across routes and are easy to audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    title: str


class ErrorCode(str, Enum):
    """Stable machine-readable codes (clients may switch on them)."""

    EMPTY_REQUEST = "empty_request"
    INVALID_REQUEST = "invalid_request"
    INVALID_IMAGE = "invalid_image"
    INVALID_BASE64 = "invalid_base64"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_INPUTS = "too_many_inputs"
    UNKNOWN_MODALITY = "unknown_modality"
    MODALITY_NOT_SERVED = "modality_not_served"
    TEXT_TOO_LONG = "text_too_long"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    INFERENCE_FAILED = "inference_failed"


ERROR_TABLE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.EMPTY_REQUEST: ErrorSpec(400, "Empty request"),
    ErrorCode.INVALID_REQUEST: ErrorSpec(422, "Invalid request"),
    ErrorCode.INVALID_IMAGE: ErrorSpec(422, "Invalid image"),
    ErrorCode.INVALID_BASE64: ErrorSpec(422, "Invalid base64"),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(413, "Image too large"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(415, "Unsupported media type"),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "Payload too large"),
    ErrorCode.TOO_MANY_INPUTS: ErrorSpec(413, "Too many inputs"),
    ErrorCode.UNKNOWN_MODALITY: ErrorSpec(422, "Unknown modality"),
    ErrorCode.MODALITY_NOT_SERVED: ErrorSpec(400, "Modality not served"),
    ErrorCode.TEXT_TOO_LONG: ErrorSpec(422, "Text too long"),
    ErrorCode.OVERLOADED: ErrorSpec(429, "Overloaded"),
    ErrorCode.NOT_READY: ErrorSpec(503, "Not ready"),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "Not found"),
    ErrorCode.INFERENCE_FAILED: ErrorSpec(500, "Inference failed"),
}


class OmnivecError(Exception):
    """A client-visible error: `message` must say what went wrong and what to do instead."""

    def __init__(self, code: ErrorCode, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return ERROR_TABLE[self.code].status

    def to_body(self) -> dict:
        return {"error": {"code": self.code.value, "status": self.status, "message": self.message}}
