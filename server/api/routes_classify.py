"""Zero-shot classification (POST /v1/classify) and named label sets (/v1/labelsets)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..errors import ErrorCode, OmnivecError
from ..services.collections import run_store
from ..services.inputs import InputResolver, RawInput, embed_all
from ..services.labelsets import LabelSet, LabelSetStore
from ..services.models import ModelRegistry
from ..services.zero_shot import ZeroShotClassifier
from .admission import admitted
from .bodies import app_state, body_kind, check_count, form_json, json_object, read_form, read_upload, upload_label, validated
from .disconnect import cancel_on_disconnect
from .json_limits import BoundedJsonRoute
from .responses import MODEL_INPUTS, STARTING, URL_INPUTS, VALIDATED, route_errors
from .schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResultOut,
    DeletedOut,
    LabelSetName,
    LabelScoreOut,
    LabelSetIn,
    LabelSetOut,
    LabelSetsResponse,
)

router = APIRouter(tags=["classification"], route_class=BoundedJsonRoute)
UPLOAD_FIELDS = ("images", "image", "audios", "audio", "files")  # each part may be an image or an audio file

CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}, "description": "image files"},
                        "audios": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "audio files (WAV, FLAC, OGG/Vorbis, Opus, MP3); any upload field (`images`, `audios`, `files`) "
                            "is recognised by its declared type, else its extension, else its magic bytes",
                        },
                        "params": {"$ref": "#/components/schemas/ClassifyOptionsIn"},
                    },
                    "required": ["params"],
                    "anyOf": [{"required": ["images"]}, {"required": ["audios"]}],
                },
                "encoding": {"params": {"contentType": "application/json"}},
            },
        },
    }
}


async def _parse(request: Request) -> tuple[ClassifyRequest, list[RawInput]]:
    limits = request.app.state.settings.limits
    if body_kind(request) == "json":
        body = validated(ClassifyRequest, await json_object(request, '{"inputs": [{"text": "a cat"}], "labels": ["cat", "dog"]}'))
        raws = [RawInput(i.kind, i.value, f"inputs[{n}].{i.kind}") for n, i in enumerate(body.inputs)]  # type: ignore[arg-type]
        check_count(len(raws), limits, "inputs")
        return body, raws
    form = await read_form(request, limits.max_inputs_per_request)
    params: dict = {}
    uploads = []
    for key, value in form.multi_items():
        if key in UPLOAD_FIELDS:
            uploads.append(value)
        elif key == "params":
            params = form_json(value, "params", dict)
        else:
            raise OmnivecError(
                ErrorCode.UNKNOWN_FIELD, f"unknown form field {key!r}; send `images` / `audios` file parts and optionally `params` (JSON)"
            )
    body = validated(ClassifyRequest, params, "params")
    raws = [RawInput(i.kind, i.value, f"inputs[{n}].{i.kind}") for n, i in enumerate(body.inputs)]  # type: ignore[arg-type]
    for value in uploads:
        label = upload_label(f"inputs[{len(raws)}]", value)
        modality, data = await read_upload(value, label, limits)
        raws.append(RawInput(modality, data, label))  # type: ignore[arg-type]
    check_count(len(raws), limits, "inputs")
    return body, raws


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Zero-shot classification of images, audio and texts against labels",
    description="Scores follow the model: softmax over logit_scale*cosine (sums to 1) for CLIP-style models, per-label "
    "sigmoid(logit_scale*cosine + bias) for SigLIP-style models. multi_label on a softmax model gives each label "
    "sigmoid(logit_scale*(cos_i - mean of the other labels' cos)). Label embeddings average the templates "
    "(default for images: 'a photo of a {}.', 'a picture of a {}.', 'an image of a {}.'; audio: 'the sound of {}.', "
    "'a recording of {}.', '{}'; texts: the label itself).",
    openapi_extra=CLASSIFY_BODY,
    responses=route_errors(
        VALIDATED, STARTING, MODEL_INPUTS, URL_INPUTS, (ErrorCode.LABELS_EMPTY, ErrorCode.LABELSET_NOT_FOUND, ErrorCode.INDEX_UNAVAILABLE, ErrorCode.MODEL_NOT_FOUND)
    ),
)
async def classify(request: Request, _permit: None = Depends(admitted)) -> ClassifyResponse:
    models: ModelRegistry = app_state(request, "models")
    resolver: InputResolver = app_state(request, "resolver")
    body, raws = await _parse(request)
    entry = models.get(body.model)
    labels, templates = body.labels, body.templates
    if body.labelset is not None:
        if labels:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, 'give either "labels" or "labelset", not both')
        stored = await run_store(_store(request).get, body.labelset)
        labels, templates = stored.labels, templates or stored.templates
    if not labels:  # fail before any download or model call
        raise OmnivecError(ErrorCode.LABELS_EMPTY, 'no labels to classify against: give "labels": ["cat", "dog", ...] or "labelset": "name"')

    classifier: ZeroShotClassifier = entry.classifier  # type: ignore[assignment]

    async def work() -> tuple:
        resolved = await resolver.resolve_all(raws)
        async with models.lease(entry) as service:
            vectors = await embed_all(service, resolved)
            return await classifier.classify(vectors, [r.modality for r in resolved], labels, templates, body.top_k, body.multi_label)

    ranked, rule = await cancel_on_disconnect(request, work())
    manifest = classifier.embedding.manifest
    return ClassifyResponse(
        model=entry.name,
        space_id=manifest.space_id,
        scoring=rule,
        multi_label=rule != "softmax",
        results=[ClassifyResultOut(labels=[LabelScoreOut(label=s.label, score=s.score, cosine=s.cosine) for s in row]) for row in ranked],
    )


# --- label sets -------------------------------------------------------------------------------


def _out(labelset: LabelSet) -> LabelSetOut:
    return LabelSetOut(**labelset.__dict__)


def _store(request: Request) -> LabelSetStore:
    return app_state(request, "labelsets")


@router.put(
    "/v1/labelsets/{name}",
    response_model=LabelSetOut,
    summary="Create or replace a named label set (persisted)",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.LABELS_EMPTY, ErrorCode.INDEX_UNAVAILABLE)),
)
async def put_labelset(request: Request, name: LabelSetName, body: LabelSetIn) -> LabelSetOut:
    return _out(await run_store(_store(request).put, name, body.labels, body.templates, body.description))


@router.get("/v1/labelsets", response_model=LabelSetsResponse, summary="List label sets", responses=route_errors(STARTING, (ErrorCode.INDEX_UNAVAILABLE,)))
async def list_labelsets(request: Request) -> LabelSetsResponse:
    return LabelSetsResponse(data=[_out(s) for s in await run_store(_store(request).list)])


@router.get(
    "/v1/labelsets/{name}",
    response_model=LabelSetOut,
    summary="Get a label set",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.LABELSET_NOT_FOUND, ErrorCode.INDEX_UNAVAILABLE)),
)
async def get_labelset(request: Request, name: LabelSetName) -> LabelSetOut:
    return _out(await run_store(_store(request).get, name))


@router.delete(
    "/v1/labelsets/{name}",
    response_model=DeletedOut,
    summary="Delete a label set",
    responses=route_errors(VALIDATED, STARTING, (ErrorCode.LABELSET_NOT_FOUND, ErrorCode.INDEX_UNAVAILABLE)),
)
async def delete_labelset(request: Request, name: LabelSetName) -> DeletedOut:
    await run_store(_store(request).delete, name)
    return DeletedOut(name=name, deleted=True)
