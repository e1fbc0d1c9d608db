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
    AUDIO_TOO_LARGE = "audio_too_large"
    INVALID_AUDIO = "invalid_audio"
    SILENT_AUDIO = "silent_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_INPUTS = "too_many_inputs"
    UNKNOWN_FIELD = "unknown_field"
    MALFORMED_BODY = "malformed_body"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MODALITY_NOT_SERVED = "modality_not_served"
    TEXT_TOO_LONG = "text_too_long"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    INFERENCE_FAILED = "inference_failed"
    INTERNAL = "internal"
    # index, search, classification
    COLLECTION_NOT_FOUND = "collection_not_found"
    COLLECTION_EXISTS = "collection_exists"
    SPACE_MISMATCH = "space_mismatch"
    INVALID_FILTER = "invalid_filter"
    DIMENSION_MISMATCH = "dimension_mismatch"
    ITEM_NOT_FOUND = "item_not_found"
    MEDIA_NOT_FOUND = "media_not_found"
    INDEX_UNAVAILABLE = "index_unavailable"
    INDEX_TIMEOUT = "index_timeout"
    INDEX_FAILED = "index_failed"
    STORAGE_FAILED = "storage_failed"
    LABELS_EMPTY = "labels_empty"
    LABELSET_NOT_FOUND = "labelset_not_found"
    # URL inputs fetched by the server
    URL_BLOCKED = "url_blocked"
    URL_FETCH_FAILED = "url_fetch_failed"
    URL_TIMEOUT = "url_timeout"
    DOWNLOAD_TOO_LARGE = "download_too_large"
    # the OpenAI-compatible API
    MODEL_NOT_FOUND = "model_not_found"
    # model lifecycle (several models, hot load/unload, re-embedding)
    MODEL_CONFLICT = "model_conflict"
    INVALID_BUNDLE = "invalid_bundle"
    FORBIDDEN = "forbidden"
    REEMBED_CONFLICT = "reembed_conflict"


ERROR_TABLE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.EMPTY_REQUEST: ErrorSpec(400, "Empty request"),
    ErrorCode.INVALID_REQUEST: ErrorSpec(422, "Invalid request"),
    ErrorCode.INVALID_IMAGE: ErrorSpec(422, "Invalid image"),
    ErrorCode.INVALID_BASE64: ErrorSpec(422, "Invalid base64"),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(413, "Image too large"),
    ErrorCode.AUDIO_TOO_LARGE: ErrorSpec(413, "Audio too large"),
    ErrorCode.INVALID_AUDIO: ErrorSpec(422, "Invalid audio"),
    ErrorCode.SILENT_AUDIO: ErrorSpec(422, "Silent audio"),
    ErrorCode.AUDIO_TOO_LONG: ErrorSpec(413, "Audio too long"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(415, "Unsupported media type"),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "Payload too large"),
    ErrorCode.TOO_MANY_INPUTS: ErrorSpec(413, "Too many inputs"),
    # Any key a body, form, item or input object does not have (was unknown_modality on /v1/embed).
    ErrorCode.UNKNOWN_FIELD: ErrorSpec(422, "Unknown field"),
    # 400: the body could not be read as its content type at all (broken multipart, too many parts).
    ErrorCode.MALFORMED_BODY: ErrorSpec(400, "Malformed body"),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, "Method not allowed"),
    ErrorCode.MODALITY_NOT_SERVED: ErrorSpec(400, "Modality not served"),
    ErrorCode.TEXT_TOO_LONG: ErrorSpec(422, "Text too long"),
    ErrorCode.OVERLOADED: ErrorSpec(429, "Overloaded"),
    ErrorCode.NOT_READY: ErrorSpec(503, "Not ready"),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "Not found"),
    ErrorCode.UNAUTHORIZED: ErrorSpec(401, "Unauthorized"),
    ErrorCode.INFERENCE_FAILED: ErrorSpec(500, "Inference failed"),
    # A bug: the response carries the request id under which the server logged the traceback.
    ErrorCode.INTERNAL: ErrorSpec(500, "Internal error"),
    ErrorCode.COLLECTION_NOT_FOUND: ErrorSpec(404, "Collection not found"),
    ErrorCode.COLLECTION_EXISTS: ErrorSpec(409, "Collection exists"),
    # 409: the request is fine, the collection's state (its embedding space) conflicts with the loaded model.
    ErrorCode.SPACE_MISMATCH: ErrorSpec(409, "Embedding space mismatch"),
    ErrorCode.INVALID_FILTER: ErrorSpec(422, "Invalid filter"),
    ErrorCode.DIMENSION_MISMATCH: ErrorSpec(422, "Vector dimension mismatch"),
    ErrorCode.ITEM_NOT_FOUND: ErrorSpec(404, "Item not found"),
    ErrorCode.MEDIA_NOT_FOUND: ErrorSpec(404, "No kept media"),
    # Engine failures: unreachable (retry later), too slow (retry, maybe smaller), or refused an
    # operation the server had already validated (a bug or a damaged collection: not worth retrying).
    ErrorCode.INDEX_UNAVAILABLE: ErrorSpec(503, "Index unavailable"),
    ErrorCode.INDEX_TIMEOUT: ErrorSpec(504, "Index timed out"),
    ErrorCode.INDEX_FAILED: ErrorSpec(500, "Index operation failed"),
    ErrorCode.STORAGE_FAILED: ErrorSpec(500, "Storage failed"),
    ErrorCode.LABELS_EMPTY: ErrorSpec(422, "No labels"),
    ErrorCode.LABELSET_NOT_FOUND: ErrorSpec(404, "Label set not found"),
    # URL inputs: all 4xx, because the URL is part of the client's input. 422 rather than 403 for a
    # blocked address: the client is not unauthorised on this API, one input value is unacceptable
    # (403 reads as an auth failure to clients and proxies). 422 rather than 502/504 for fetch
    # failures and timeouts: the remote is the client's choice, retrying the same URL will not help.
    ErrorCode.URL_BLOCKED: ErrorSpec(422, "URL blocked"),
    ErrorCode.URL_FETCH_FAILED: ErrorSpec(422, "URL fetch failed"),
    ErrorCode.URL_TIMEOUT: ErrorSpec(422, "URL fetch timed out"),
    ErrorCode.DOWNLOAD_TOO_LARGE: ErrorSpec(413, "Download too large"),
    # 404 as OpenAI answers an unknown `model`, so OpenAI clients raise their NotFoundError.
    ErrorCode.MODEL_NOT_FOUND: ErrorSpec(404, "Model not found"),
    # 409: the model's state forbids it (default model, name taken, still loading, used by a re-embed).
    ErrorCode.MODEL_CONFLICT: ErrorSpec(409, "Model conflict"),
    ErrorCode.INVALID_BUNDLE: ErrorSpec(422, "Invalid bundle"),
    # 403: a valid API key, but the operation (loading/unloading models, re-embedding) needs an admin key.
    ErrorCode.FORBIDDEN: ErrorSpec(403, "Admin key required"),
    ErrorCode.REEMBED_CONFLICT: ErrorSpec(409, "Re-embed conflict"),
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

    def to_body(self, request_id: str | None = None) -> dict:
        """The response body; `request_id` names the log lines of this request (internal errors)."""
        error: dict = {"code": self.code.value, "status": self.status, "message": self.message}
        if request_id is not None:
            error["request_id"] = request_id
        return {"error": error}


def error_responses(*codes: ErrorCode, schema: str = "ErrorResponse") -> dict[int | str, dict]:
    """The OpenAPI `responses` of a route that can fail with `codes`: one entry per status, naming its codes.

    `schema` is the component the error body follows (the API's own shape, or the OpenAI shape).
    """
    headers = {
        401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
        405: {"Allow": {"description": "the methods this path accepts", "schema": {"type": "string"}}},
        429: {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}},
    }
    by_status: dict[int, list[ErrorCode]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_TABLE[code].status, []).append(code)
    return {
        status: {
            "description": "; ".join(f"`{c.value}`: {ERROR_TABLE[c].title}" for c in found),
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
            **({"headers": headers[status]} if status in headers else {}),
        }
        for status, found in sorted(by_status.items())
    }


def status_code(status: int) -> ErrorCode:
    """The table's code for an HTTP status raised by the framework itself (no route, wrong method, broken body)."""
    return {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.PAYLOAD_TOO_LARGE}.get(
        status, ErrorCode.MALFORMED_BODY if 400 <= status < 500 else ErrorCode.INTERNAL
    )
