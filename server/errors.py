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
    INVALID_AUDIO = "invalid_audio"
    SILENT_AUDIO = "silent_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_INPUTS = "too_many_inputs"
    UNKNOWN_MODALITY = "unknown_modality"
    MODALITY_NOT_SERVED = "modality_not_served"
    TEXT_TOO_LONG = "text_too_long"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    INFERENCE_FAILED = "inference_failed"
    # index, search, classification
    COLLECTION_NOT_FOUND = "collection_not_found"
    COLLECTION_EXISTS = "collection_exists"
    SPACE_MISMATCH = "space_mismatch"
    INVALID_FILTER = "invalid_filter"
    DIMENSION_MISMATCH = "dimension_mismatch"
    ITEM_NOT_FOUND = "item_not_found"
    MEDIA_NOT_FOUND = "media_not_found"
    INDEX_UNAVAILABLE = "index_unavailable"
    LABELS_EMPTY = "labels_empty"
    LABELSET_NOT_FOUND = "labelset_not_found"
    # URL inputs fetched by the server
    URL_BLOCKED = "url_blocked"
    URL_FETCH_FAILED = "url_fetch_failed"
    URL_TIMEOUT = "url_timeout"
    DOWNLOAD_TOO_LARGE = "download_too_large"


ERROR_TABLE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.EMPTY_REQUEST: ErrorSpec(400, "Empty request"),
    ErrorCode.INVALID_REQUEST: ErrorSpec(422, "Invalid request"),
    ErrorCode.INVALID_IMAGE: ErrorSpec(422, "Invalid image"),
    ErrorCode.INVALID_BASE64: ErrorSpec(422, "Invalid base64"),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(413, "Image too large"),
    ErrorCode.INVALID_AUDIO: ErrorSpec(422, "Invalid audio"),
    ErrorCode.SILENT_AUDIO: ErrorSpec(422, "Silent audio"),
    ErrorCode.AUDIO_TOO_LONG: ErrorSpec(413, "Audio too long"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(415, "Unsupported media type"),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "Payload too large"),
    ErrorCode.TOO_MANY_INPUTS: ErrorSpec(413, "Too many inputs"),
    ErrorCode.UNKNOWN_MODALITY: ErrorSpec(422, "Unknown modality"),
    ErrorCode.MODALITY_NOT_SERVED: ErrorSpec(400, "Modality not served"),
    ErrorCode.TEXT_TOO_LONG: ErrorSpec(422, "Text too long"),
    ErrorCode.OVERLOADED: ErrorSpec(429, "Overloaded"),
    ErrorCode.NOT_READY: ErrorSpec(503, "Not ready"),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "Not found"),
    ErrorCode.UNAUTHORIZED: ErrorSpec(401, "Unauthorized"),
    ErrorCode.INFERENCE_FAILED: ErrorSpec(500, "Inference failed"),
    ErrorCode.COLLECTION_NOT_FOUND: ErrorSpec(404, "Collection not found"),
    ErrorCode.COLLECTION_EXISTS: ErrorSpec(409, "Collection exists"),
    # 409: the request is fine, the collection's state (its embedding space) conflicts with the loaded model.
    ErrorCode.SPACE_MISMATCH: ErrorSpec(409, "Embedding space mismatch"),
    ErrorCode.INVALID_FILTER: ErrorSpec(422, "Invalid filter"),
    ErrorCode.DIMENSION_MISMATCH: ErrorSpec(422, "Vector dimension mismatch"),
    ErrorCode.ITEM_NOT_FOUND: ErrorSpec(404, "Item not found"),
    ErrorCode.MEDIA_NOT_FOUND: ErrorSpec(404, "No kept media"),
    ErrorCode.INDEX_UNAVAILABLE: ErrorSpec(503, "Index unavailable"),
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


def from_index_error(exc: BaseException, *, collection: str | None = None) -> OmnivecError:
    """The one mapping from index-layer exceptions (server/index) to client-visible errors.

    Anything the index layer did not raise on purpose (a Qdrant server that is down, a network
    error) becomes 503 index_unavailable: the request may succeed later, the client did nothing wrong.
    """
    from .index.store import (  # local: keeps this module import-light
        CollectionExists,
        CollectionNotFound,
        DimensionMismatch,
        IndexStoreError,
        InvalidFilter,
        InvalidRequest,
    )

    if isinstance(exc, OmnivecError):
        return exc
    if isinstance(exc, CollectionNotFound):
        return OmnivecError(
            ErrorCode.COLLECTION_NOT_FOUND, f"collection {exc.name!r} does not exist; GET /v1/collections lists them, POST /v1/collections creates one"
        )
    if isinstance(exc, CollectionExists):
        return OmnivecError(ErrorCode.COLLECTION_EXISTS, str(exc))
    if isinstance(exc, InvalidFilter):
        return OmnivecError(ErrorCode.INVALID_FILTER, str(exc))
    if isinstance(exc, DimensionMismatch):
        return OmnivecError(ErrorCode.DIMENSION_MISMATCH, str(exc))
    if isinstance(exc, InvalidRequest):
        return OmnivecError(ErrorCode.INVALID_REQUEST, str(exc))
    where = f" (collection {collection!r})" if collection else ""
    if isinstance(exc, IndexStoreError):
        return OmnivecError(ErrorCode.INDEX_UNAVAILABLE, f"the index cannot serve this request{where}: {exc}")
    return OmnivecError(
        ErrorCode.INDEX_UNAVAILABLE,
        f"the index engine failed{where} ({exc.__class__.__name__}: {str(exc)[:300]}); check that Qdrant is reachable and retry",
    )
