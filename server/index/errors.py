"""The index layer's errors: each one is an `OmnivecError` carrying its row of the error table,
so the services pass them on untouched and the API renders them like any other error. The message
says what to do next.
"""

from __future__ import annotations

from ..errors import ErrorCode, OmnivecError

__all__ = [
    "IndexStoreError",
    "CollectionNotFound",
    "CollectionExists",
    "InvalidRequest",
    "InvalidFilter",
    "DimensionMismatch",
    "IndexUnavailable",
    "IndexTimeout",
    "IndexFailed",
]




class IndexStoreError(OmnivecError):
    """Base class of every error the index layer raises; each carries its row of the error table."""

    code = ErrorCode.INDEX_FAILED

    def __init__(self, message: str, code: ErrorCode | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(code or type(self).code, message, headers=headers)


class CollectionNotFound(IndexStoreError):
    """The named collection does not exist (HTTP 404)."""

    code = ErrorCode.COLLECTION_NOT_FOUND

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"collection {name!r} does not exist; GET /v1/collections lists them, POST /v1/collections creates one")


class CollectionExists(IndexStoreError):
    """A collection with this name already exists (HTTP 409)."""

    code = ErrorCode.COLLECTION_EXISTS

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"collection {name!r} already exists; use it, pick another name, or delete it first")


class InvalidRequest(IndexStoreError):
    """The request cannot be served as given (HTTP 422): bad collection name, vector, top_k, ..."""

    code = ErrorCode.INVALID_REQUEST


class InvalidFilter(InvalidRequest):
    """The filter dict is not a supported Qdrant-style filter (HTTP 422)."""

    code = ErrorCode.INVALID_FILTER
    EXAMPLE = (
        '{"must": [{"key": "tags", "match": {"any": ["cat", "dog"]}}, '
        '{"key": "year", "range": {"gte": 2000, "lt": 2010}}, '
        '{"key": "meta.color", "match": {"value": "red"}}], '
        '"must_not": [{"has_id": ["img-001"]}]}'
    )

    def __init__(self, message: str):
        self.detail = message
        super().__init__(f"invalid filter: {message}. Example of a valid filter: {self.EXAMPLE}")


class DimensionMismatch(InvalidRequest):
    """A vector's length differs from the collection's dimension (HTTP 422)."""

    code = ErrorCode.DIMENSION_MISMATCH

    def __init__(self, expected: int, got: int):
        self.expected = expected
        self.got = got
        super().__init__(
            f"vector has {got} dimensions but the collection expects {expected}; embed with the "
            f"collection's model, or create a collection with dim={got}"
        )


class IndexUnavailable(IndexStoreError):
    """The engine cannot be reached (HTTP 503): the same request may succeed in a moment."""

    code = ErrorCode.INDEX_UNAVAILABLE

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "1"})


class IndexTimeout(IndexStoreError):
    """The engine did not answer in time (HTTP 504)."""

    code = ErrorCode.INDEX_TIMEOUT


class IndexFailed(IndexStoreError):
    """The engine refused an operation the server had validated (HTTP 500); logged with the cause."""

    code = ErrorCode.INDEX_FAILED
