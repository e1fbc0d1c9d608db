"""Which error codes each kind of route can answer with, as OpenAPI `responses` (from the one error table).

A route declares `responses=route_errors(...)` with the groups that fit what it does; the statuses
and descriptions come from `errors.ERROR_TABLE`, so the document cannot drift from the table.
"""

from __future__ import annotations

from ..errors import ErrorCode as E
from ..errors import error_responses

# Any route behind authentication: no key (401), a body over the size limit (413), an unexpected failure (500).
ANY = (E.UNAUTHORIZED, E.PAYLOAD_TOO_LARGE, E.INTERNAL)
# A JSON body or query parameters validated against the documented schema.
VALIDATED = (E.INVALID_REQUEST, E.UNKNOWN_FIELD, E.MALFORMED_BODY)
# Before the lifespan finished loading the model and opening the index.
STARTING = (E.NOT_READY,)
# Inputs that go through a model tower (texts, base64/data: URI media, uploads).
MODEL_INPUTS = (
    E.EMPTY_REQUEST,
    E.MODALITY_NOT_SERVED,
    E.IMAGE_TOO_LARGE,
    E.AUDIO_TOO_LONG,
    E.TOO_MANY_INPUTS,
    E.UNSUPPORTED_MEDIA_TYPE,
    E.AUDIO_TOO_LARGE,
    E.INVALID_IMAGE,
    E.INVALID_BASE64,
    E.INVALID_AUDIO,
    E.SILENT_AUDIO,
    E.TEXT_TOO_LONG,
    E.OVERLOADED,
    E.INFERENCE_FAILED,
)
# Inputs given as http(s) URLs, downloaded by the server.
URL_INPUTS = (E.URL_BLOCKED, E.URL_FETCH_FAILED, E.URL_TIMEOUT, E.DOWNLOAD_TOO_LARGE)
# Anything that names a collection.
COLLECTION = (E.COLLECTION_NOT_FOUND, E.INDEX_UNAVAILABLE, E.INDEX_TIMEOUT, E.INDEX_FAILED)


def route_errors(*groups: tuple[E, ...], schema: str = "ErrorResponse") -> dict[int | str, dict]:
    """`responses` for a route that can fail with the codes of `groups` (plus those of every route)."""
    return error_responses(*ANY, *(code for group in groups for code in group), schema=schema)
