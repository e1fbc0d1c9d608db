"""POST /v1/collections/{name}/search: JSON query of any kind, or an uploaded image or audio file."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..errors import ErrorCode, OmnivecError
from ..services.search import SearchOptions, SearchQuery, SearchService
from .admission import admitted
from .bodies import app_state, body_kind, form_json, json_object, read_form, read_upload, upload_label, validated
from .disconnect import cancel_on_disconnect
from .json_limits import BoundedJsonRoute
from .responses import COLLECTION, MODEL_INPUTS, STARTING, URL_INPUTS, VALIDATED, route_errors
from .schemas import CollectionName, SearchHitOut, SearchOptionsIn, SearchRequest, SearchResponse

router = APIRouter(tags=["search"], route_class=BoundedJsonRoute)

SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "the query image (or send `audio`)"},
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "the query audio file (WAV, FLAC, OGG/Vorbis, Opus, MP3); either part is recognised "
                            "by its declared type, else its extension, else its magic bytes",
                        },
                        "params": {"$ref": "#/components/schemas/SearchOptionsIn"},
                    },
                    "oneOf": [{"required": ["image"]}, {"required": ["audio"]}],
                },
                "encoding": {"params": {"contentType": "application/json"}},
            },
        },
    }
}


def _options(body: SearchOptionsIn) -> SearchOptions:
    return SearchOptions(
        top_k=body.top_k,
        offset=body.offset,
        score_threshold=body.score_threshold,
        filter=body.filter,
        modality=body.modality,
        with_payload=body.with_payload,
    )


async def _parse(request: Request) -> tuple[SearchQuery, SearchOptions]:
    if body_kind(request) == "json":
        raw = await json_object(request, '{"query": {"text": "a red bike"}, "top_k": 10}')
        if "query" not in raw:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, 'no "query": give {"query": {"text"|"image"|"audio"|"url"|"id"|"vector": ...}}')
        body = validated(SearchRequest, raw)
        return SearchQuery(body.query.kind, getattr(body.query, body.query.kind)), _options(body)  # type: ignore[arg-type]
    limits = request.app.state.settings.limits
    form = await read_form(request, 2)
    upload: tuple[str, bytes, str] | None = None  # (modality, bytes, label): the query, made once the params are checked
    params: dict = {}
    for key, value in form.multi_items():
        if key in ("image", "audio") and upload is None:
            label = upload_label(f"query.{key}", value)
            modality, data = await read_upload(value, label, limits)  # type: ignore[arg-type]
            upload = (modality, data, label)
        elif key == "params":
            params = form_json(value, "params", dict)
        else:
            raise OmnivecError(
                ErrorCode.UNKNOWN_FIELD, f"unknown form field {key!r}; send one `image` or `audio` file part and optionally `params` (JSON)"
            )
    if upload is None:
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, "no file part: a multipart search uploads the query as an `image` or `audio` part")
    body = validated(SearchOptionsIn, params, "params")
    return SearchQuery(*upload), _options(body)  # type: ignore[arg-type]


@router.post(
    "/v1/collections/{name}/search",
    response_model=SearchResponse,
    summary="Nearest items to a text, image, audio, URL, stored item or raw vector",
    description="Cosine similarity, best first. `filter` is Qdrant filter JSON over your payload fields and `modality`; "
    "`modality` is a shorthand for the latter. Pagination: the same query with offset=k*top_k gives page k+1. "
    "All modalities share one space: text->audio, audio->image and audio->audio work like text->image. "
    "Text/image/audio/URL queries need the collection to be in the loaded model's space (409 otherwise).",
    openapi_extra=SEARCH_BODY,
    responses=route_errors(
        VALIDATED, STARTING, COLLECTION, MODEL_INPUTS, URL_INPUTS, (ErrorCode.SPACE_MISMATCH, ErrorCode.INVALID_FILTER, ErrorCode.DIMENSION_MISMATCH, ErrorCode.ITEM_NOT_FOUND)
    ),
)
async def search(request: Request, name: CollectionName, _permit: None = Depends(admitted)) -> SearchResponse:
    service: SearchService = app_state(request, "search")
    query, options = await _parse(request)
    hits = await cancel_on_disconnect(request, service.search(name, query, options))
    return SearchResponse(collection=name, results=[SearchHitOut(id=h.id, score=h.score, modality=h.modality, payload=h.payload) for h in hits])
