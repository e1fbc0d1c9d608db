"""Collections and their items: create/list/describe/delete, add (JSON or uploads), get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from ..errors import ErrorCode, OmnivecError
from ..index.store import CollectionInfo
from ..index.vector_options import VectorOptions
from ..services.collections import CollectionService, ItemError, ItemSpec
from ..services.payloads import split_payload, user_payload
from ..services.dimensions import MODEL_DIM_KEY
from ..services.inputs import RawInput
from ..services.search import combined_filter
from ..settings import LimitsSettings
from .admission import admitted
from .bodies import app_state, body_kind, check_count, form_json, json_object, read_form, read_upload, upload_label, validation_error
from .disconnect import cancel_on_disconnect
from .json_limits import BoundedJsonRoute
from .responses import COLLECTION, MODEL_INPUTS, STARTING, URL_INPUTS, VALIDATED, route_errors
from .schemas_media import CreateCollectionIn
from .schemas_vectors import CollectionVectorsOut, HnswIn, HnswOut
from .schemas import (
    IndexingOut,
    OptimizeResponse,
    AddItemsResponse,
    CollectionOut,
    CollectionName,
    CollectionsResponse,
    DeletedOut,
    DeleteItemsRequest,
    DeleteItemsResponse,
    ExistsRequest,
    ExistsResponse,
    ItemErrorOut,
    ItemIn,
    ItemOut,
    ScrollRequest,
    ScrollResponse,
)

router = APIRouter(tags=["collections"], route_class=BoundedJsonRoute)
UPLOAD_FIELDS = ("files", "images", "audios")  # any of them may carry image or audio files


class FileItemMeta(BaseModel):
    """Multipart `items[i]`: the id and payload of the i-th uploaded file."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1, max_length=512)
    payload: dict = Field(default_factory=dict)


def _service(request: Request) -> CollectionService:
    return app_state(request, "collections")


def indexing_out(service: CollectionService, name: str) -> IndexingOut:
    state = service.builder.state(name)
    return IndexingOut(
        building=state.running,
        points_since_build=state.points_since_build,
        builds=state.builds,
        last_build_s=state.last_build_s,
        last_error=state.last_error,
    )


def vectors_out(info: CollectionInfo) -> CollectionVectorsOut:
    opts = info.vectors
    return CollectionVectorsOut(
        dimensions=info.dim,
        model_dim=int((info.extra or {}).get(MODEL_DIM_KEY) or info.dim),
        quantization=opts.quantization,
        oversampling=opts.effective_oversampling,
        on_disk=opts.on_disk,
        hnsw=HnswOut(m=opts.hnsw_m, ef_construct=opts.hnsw_ef_construct, ef=opts.hnsw_ef),
    )


def collection_out(info: CollectionInfo, service: CollectionService) -> CollectionOut:
    meta = info.extra or {}
    return CollectionOut(
        vectors=vectors_out(info),
        warnings=service.warnings(info),
        indexing=indexing_out(service, info.name),
        name=info.name,
        dim=info.dim,
        space_id=info.space_id,
        model=info.model,
        count=info.count,
        created_at=info.created_at,
        description=str(meta.get("description", "")),
        extra=dict(meta.get("extra") or {}),
        matches_model=service.served(info.space_id),
    )


@router.post(
    "/v1/collections",
    status_code=201,
    response_model=CollectionOut,
    summary="Create a collection in a loaded model's space (the default model's unless `model` names another)",
    description="Optional vector options: `quantization` (none | int8 | binary, searched with oversampling and rescored with the "
    "original vectors), `on_disk`, `hnsw` {m, ef_construct} and `dimensions` (a renormalised prefix of the model's vectors; added items "
    "and queries are cut to it). An engine that cannot honour an option answers 422 saying which.",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.COLLECTION_EXISTS, ErrorCode.INDEX_UNAVAILABLE, ErrorCode.MODEL_NOT_FOUND)),
)
async def create_collection(request: Request, body: CreateCollectionIn) -> CollectionOut:
    service = _service(request)
    hnsw = body.hnsw or HnswIn()
    vectors = VectorOptions(body.quantization, body.oversampling, body.on_disk, hnsw.m, hnsw.ef_construct, hnsw.ef)
    info = await service.create(
        body.name,
        body.description,
        body.extra,
        dict(body.payload_indexes),
        keep_media=body.keep_media,
        model=body.model,
        vectors=vectors,
        dimensions=body.dimensions,
    )
    return collection_out(info, service)


@router.get("/v1/collections", response_model=CollectionsResponse, summary="List collections", responses=route_errors(STARTING, (ErrorCode.INDEX_UNAVAILABLE,)))
async def list_collections(request: Request) -> CollectionsResponse:
    service = _service(request)
    return CollectionsResponse(data=[collection_out(c, service) for c in await service.list()])


@router.get(
    "/v1/collections/{name}",
    response_model=CollectionOut,
    summary="Describe a collection: count, space id, model, dim",
    responses=route_errors(VALIDATED, STARTING, COLLECTION),
)
async def get_collection(request: Request, name: CollectionName) -> CollectionOut:
    service = _service(request)
    return collection_out(await service.get(name), service)


@router.post(
    "/v1/collections/{name}/optimize",
    status_code=202,
    response_model=OptimizeResponse,
    summary="Build the collection's ANN index now, in the background (searches keep working)",
    description="Also happens by itself once index.optimize_after_points points were added since the last build. "
    "GET /v1/collections/{name} shows `indexing.building` until it is done.",
    responses=route_errors(VALIDATED, STARTING, COLLECTION),
)
async def optimize_collection(request: Request, name: CollectionName) -> OptimizeResponse:
    service = _service(request)
    started = await service.optimize(name)
    return OptimizeResponse(name=name, started=started, indexing=indexing_out(service, name))


@router.delete(
    "/v1/collections/{name}",
    response_model=DeletedOut,
    summary="Delete a collection and all its items",
    responses=route_errors(VALIDATED, STARTING, COLLECTION),
)
async def delete_collection(request: Request, name: CollectionName) -> DeletedOut:
    await _service(request).delete(name)
    return DeletedOut(name=name, deleted=True)


# --- items ------------------------------------------------------------------------------------


def _entries_from_json(raw_items: list) -> list[ItemSpec | ItemError]:
    entries: list[ItemSpec | ItemError] = []
    for i, raw in enumerate(raw_items):
        label = f"items[{i}]"
        try:
            item = ItemIn.model_validate(raw)
            entries.append(ItemSpec(i, RawInput(item.kind, item.value, f"{label}.{item.kind}"), item.id, user_payload(item.payload, label)))  # type: ignore[arg-type]
        except ValidationError as exc:
            entries.append(ItemError.of(i, validation_error(exc, label)))
        except OmnivecError as exc:
            entries.append(ItemError.of(i, exc))
    return entries


async def _parse_json_items(request: Request, limits: LimitsSettings) -> list[ItemSpec | ItemError]:
    raw = await json_object(request, '{"items": [{"text": "a red bike", "payload": {"shop": "a"}}, {"url": "https://..."}]}')
    unknown = set(raw) - {"items"}
    if unknown:
        raise OmnivecError(
            ErrorCode.UNKNOWN_FIELD,
            f"unknown field(s) {sorted(unknown)}; the body is {{\"items\": [{{\"text\"|\"image\"|\"audio\"|\"url\": ..., \"id\"?: ..., \"payload\"?: {{...}}}}]}}",
        )
    items = raw.get("items")
    if not isinstance(items, list):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, '"items" must be a list of {"text"|"image"|"audio"|"url": ..., "id"?, "payload"?} objects')
    check_count(len(items), limits, "items")
    return _entries_from_json(items)


async def _parse_multipart_items(request: Request, limits: LimitsSettings) -> list[ItemSpec | ItemError]:
    form = await read_form(request, limits.max_inputs_per_request)
    files: list[tuple[str, UploadFile | str]] = []
    metas: list | None = None
    shared: dict = {}
    for key, value in form.multi_items():
        if key in UPLOAD_FIELDS:
            files.append((key, value))
        elif key == "items":
            metas = form_json(value, "items", list)
        elif key == "payload":
            shared = user_payload(form_json(value, "payload", dict), "payload")
        else:
            raise OmnivecError(
                ErrorCode.UNKNOWN_FIELD,
                f"unknown form field {key!r}; send `files` (image or audio) file parts, optionally `items` (JSON array) and `payload` (JSON object)",
            )
    check_count(len(files), limits, "files")
    if metas is not None and len(metas) != len(files):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"form field 'items' has {len(metas)} entries for {len(files)} files; items[i] describes the i-th file")
    entries: list[ItemSpec | ItemError] = []
    for i, (key, value) in enumerate(files):
        label = upload_label(f"items[{i}]", value)
        try:
            meta = FileItemMeta.model_validate(metas[i] if metas is not None else {})
            payload = user_payload({**shared, **meta.payload}, label)
            if isinstance(value, UploadFile):
                modality, data = await read_upload(value, label, limits)
                raw = RawInput(modality, data, label)  # type: ignore[arg-type]
            else:  # a text field: base64 / data URI, as in /v1/embed
                raw = RawInput("audio" if key == "audios" else "image", value, label)
            entries.append(ItemSpec(i, raw, meta.id, payload))
        except ValidationError as exc:
            entries.append(ItemError.of(i, validation_error(exc, label)))
        except OmnivecError as exc:
            entries.append(ItemError.of(i, exc))
    return entries


ITEMS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AddItemsRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "image or audio files (field names `images` and `audios` work too); each file's modality comes "
                            "from its declared type (image/*, audio/*), else its extension, else its magic bytes",
                        },
                        "items": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/FileItemMeta"},
                            "description": "items[i] = the id and payload of the i-th file (as many entries as files)",
                        },
                        "payload": {"type": "object", "description": "added to every file's payload (its own payload wins)"},
                    },
                    "required": ["files"],
                },
                "encoding": {"items": {"contentType": "application/json"}, "payload": {"contentType": "application/json"}},
            },
        },
    }
}


@router.post(
    "/v1/collections/{name}/items",
    response_model=AddItemsResponse,
    summary="Embed and upsert items (texts, images, audio, image/audio URLs, uploads)",
    description="Each item is embedded with the loaded model and stored with payload = your payload + `modality`. "
    "Audio items are embedded as the renormalised mean of their windows. "
    "Ids default to sha256(modality, content) in hex, so indexing the same content again replaces it. A bad item is "
    "reported in `errors` (index, code, message) and does not fail the others; only whole-request problems "
    "(unknown collection 404, space mismatch 409, empty or oversized request) are request errors.",
    openapi_extra=ITEMS_BODY,
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.SPACE_MISMATCH,), MODEL_INPUTS, URL_INPUTS),
)
async def add_items(request: Request, name: CollectionName, _permit: None = Depends(admitted)) -> AddItemsResponse:
    service = _service(request)
    limits = request.app.state.settings.limits
    entries = await (_parse_json_items(request, limits) if body_kind(request) == "json" else _parse_multipart_items(request, limits))
    result = await cancel_on_disconnect(request, service.add_items(name, entries))
    return AddItemsResponse(
        collection=name,
        ids=result.ids,
        indexed=result.indexed,
        errors=[ItemErrorOut(index=e.index, code=e.code, message=e.message) for e in result.errors],
    )


async def _delete_items(request: Request, name: CollectionName, body: DeleteItemsRequest) -> DeleteItemsResponse:
    return DeleteItemsResponse(deleted=await _service(request).delete_items(name, body.ids, body.filter))


@router.delete(
    "/v1/collections/{name}/items",
    response_model=DeleteItemsResponse,
    summary="Delete items by ids and/or a filter",
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.INVALID_FILTER,)),
)
async def delete_items(request: Request, name: CollectionName, body: DeleteItemsRequest) -> DeleteItemsResponse:
    return await _delete_items(request, name, body)


@router.post(
    "/v1/collections/{name}/items/delete",
    response_model=DeleteItemsResponse,
    summary="Delete items by ids and/or a filter (for clients that cannot send a DELETE body)",
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.INVALID_FILTER,)),
)
async def delete_items_post(request: Request, name: CollectionName, body: DeleteItemsRequest) -> DeleteItemsResponse:
    return await _delete_items(request, name, body)


@router.post(
    "/v1/collections/{name}/items/exists",
    response_model=ExistsResponse,
    summary="Which of these ids are stored (resumable indexing)",
    responses=route_errors(VALIDATED, STARTING, COLLECTION),
)
async def items_exist(request: Request, name: CollectionName, body: ExistsRequest) -> ExistsResponse:
    found = await _service(request).existing_ids(name, body.ids)
    return ExistsResponse(existing=[i for i in dict.fromkeys(body.ids) if i in found])


@router.post(
    "/v1/collections/{name}/items/scroll",
    response_model=ScrollResponse,
    summary="Page through a collection's items (export, backup, re-embedding), optionally filtered",
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.INVALID_FILTER,)),
)
async def scroll_items(request: Request, name: CollectionName, body: ScrollRequest) -> ScrollResponse:
    flt = combined_filter(body.filter, body.modality)
    points, cursor = await _service(request).scroll(name, body.limit, body.cursor, flt, body.with_vectors)
    items = []
    for point in points:
        modality, payload = split_payload(point.payload)
        items.append(ItemOut(id=point.id, modality=modality, payload=payload, vector=[float(x) for x in point.vector] if body.with_vectors else None))
    return ScrollResponse(collection=name, items=items, next_cursor=cursor)


@router.get(
    "/v1/collections/{name}/items/{item_id:path}",
    response_model=ItemOut,
    summary="Get one item: modality, payload, optionally its vector",
    responses=route_errors(VALIDATED, STARTING, COLLECTION, (ErrorCode.ITEM_NOT_FOUND,)),
)
async def get_item(request: Request, name: CollectionName, item_id: str, with_vector: bool = False) -> ItemOut:
    point = await _service(request).get_item(name, item_id, with_vector)
    modality, payload = split_payload(point.payload)
    return ItemOut(id=point.id, modality=modality, payload=payload, vector=[float(x) for x in point.vector] if with_vector else None)
