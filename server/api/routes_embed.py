"""POST /v1/embed: JSON or multipart in, normalised embeddings out, in a predictable order."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile

from ..errors import ErrorCode, OmnivecError
from ..media import decode_media_string
from ..services.dimensions import check_dimensions, nested_warning, prefix
from ..services.embedding import EmbeddingService
from ..services.models import ModelRegistry
from ..settings import LimitsSettings
from .admission import admitted
from .bodies import app_state, read_form, read_upload, upload_label, validated
from .disconnect import cancel_on_disconnect
from .encodings import ENCODINGS, encode_vector
from .json_limits import BoundedJsonRoute, loads_bounded
from .responses import MODEL_INPUTS, STARTING, VALIDATED, route_errors
from .schemas import INPUT_MODALITIES, AudioWindowOut, EmbeddingItem, EmbedRequest, EmbedResponse, Usage

router = APIRouter(route_class=BoundedJsonRoute)

LIST_FIELDS = {"texts": "text", "images": "image", "audios": "audio"}  # JSON lists, in default output order
FORM_FIELDS = {**LIST_FIELDS, "text": "text", "image": "image", "audio": "audio"}  # multipart accepts both spellings
JSON_FIELDS = set(EmbedRequest.model_fields)
Require = Callable[[str | None, str], None]  # (model name or None for the default, modality): refuses what that model lacks


@dataclass
class ParsedInput:
    modality: str
    input_index: int
    value: str | bytes
    label: str  # how error messages name this input, e.g. "images[2] (cat.jpg)"


@dataclass
class ParsedEmbed:
    """Inputs in output order."""

    items: list[ParsedInput] = field(default_factory=list)
    encoding: str = "float"
    truncate: bool = True
    audio_windows: bool = False
    model: str | None = None  # None: the default model
    dimensions: int | None = None


def _unknown_field_error(name: str) -> OmnivecError:
    hint = f"did you mean {name + 's'!r} (a list)? " if name in INPUT_MODALITIES else ""
    return OmnivecError(
        ErrorCode.UNKNOWN_FIELD,
        f"unknown field {name!r}: {hint}/v1/embed takes texts (strings), images and audios (base64 or data: URIs), "
        "inputs ([{'text': ...} | {'image': ...} | {'audio': ...}]), encoding, dimensions, truncate, audio_windows and model",
    )


async def _parse_json(request: Request, limits: LimitsSettings, require: Require) -> ParsedEmbed:
    body = await request.body()
    if not body.strip():
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, "the request body is empty; send {\"texts\": [...]}, {\"images\": [...]} and/or {\"audios\": [...]}")
    try:
        raw = loads_bounded(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"the body is not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(raw, dict):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object such as {\"texts\": [\"a dog\"]}")
    for name in raw:
        if name not in JSON_FIELDS:
            raise _unknown_field_error(name)
    for i, item in enumerate(raw.get("inputs") or []):
        if isinstance(item, dict):
            for name in item:
                if name not in INPUT_MODALITIES:
                    err = _unknown_field_error(name)
                    err.message = f"inputs[{i}]: {err.message}"
                    raise err
    req = validated(EmbedRequest, raw)
    parsed = ParsedEmbed(encoding=req.encoding, truncate=req.truncate, audio_windows=req.audio_windows, model=req.model, dimensions=req.dimensions)
    if req.inputs:
        if any(getattr(req, name) for name in LIST_FIELDS):
            raise OmnivecError(ErrorCode.INVALID_REQUEST, "use either `inputs` or `texts`/`images`/`audios` in one request, not both")
        parsed.items = [ParsedInput(inp.modality, i, inp.value, f"inputs[{i}].{inp.modality}") for i, inp in enumerate(req.inputs)]
    else:
        for name, modality in LIST_FIELDS.items():
            parsed.items += [ParsedInput(modality, i, value, f"{name}[{i}]") for i, value in enumerate(getattr(req, name))]
    _check_count(parsed, limits)
    for modality in dict.fromkeys(item.modality for item in parsed.items):
        require(parsed.model, modality)  # before decoding: "this model has no audio tower" beats "your base64 is odd"
    for item in parsed.items:
        if item.modality != "text":
            item.value = decode_media_string(item.value, item.modality, item.label, limits.max_bytes(item.modality))  # type: ignore[arg-type]
    return parsed


async def _parse_multipart(request: Request, limits: LimitsSettings, require: Require) -> ParsedEmbed:
    form = await read_form(request, limits.max_inputs_per_request)
    parsed = ParsedEmbed()
    groups: dict[str, list[ParsedInput]] = {modality: [] for modality in LIST_FIELDS.values()}
    for name, value in form.multi_items():
        if name in ("encoding", "truncate", "audio_windows", "dimensions", "model"):
            if not isinstance(value, str):
                raise OmnivecError(ErrorCode.INVALID_REQUEST, f"form field {name!r} must be a plain value")
            flag = value.strip().lower()
            if name == "model":
                parsed.model = value
            elif name == "encoding":
                if value not in ENCODINGS:
                    raise OmnivecError(ErrorCode.INVALID_REQUEST, f"encoding must be one of {', '.join(ENCODINGS)}")
                parsed.encoding = value
            elif name == "dimensions":
                if not (flag.isascii() and flag.isdigit()):
                    raise OmnivecError(ErrorCode.INVALID_REQUEST, f"dimensions must be a positive integer, got {value!r}")
                parsed.dimensions = int(flag)
            elif name == "truncate":
                parsed.truncate = flag not in ("false", "0", "no")
            else:
                parsed.audio_windows = flag in ("true", "1", "yes", "on")
        elif name in FORM_FIELDS:
            modality = FORM_FIELDS[name]
            group = groups[modality]
            if modality == "text":
                text = (await value.read()).decode("utf-8", errors="replace") if isinstance(value, UploadFile) else value
                group.append(ParsedInput("text", len(group), text, f"texts[{len(group)}]"))
                continue
            label = upload_label(f"{modality}s[{len(group)}]", value)
            if isinstance(value, UploadFile):
                _, data = await read_upload(value, label, limits, modality)
            else:
                data = decode_media_string(value, modality, label, limits.max_bytes(modality))
            group.append(ParsedInput(modality, len(group), data, label))
        else:
            raise _unknown_field_error(name)
    parsed.items = [item for group in groups.values() for item in group]
    _check_count(parsed, limits)
    for modality in dict.fromkeys(item.modality for item in parsed.items):
        require(parsed.model, modality)  # after the loop: the `model` field may follow the files
    return parsed


def _check_count(parsed: ParsedEmbed, limits: LimitsSettings) -> None:
    if not parsed.items:
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, "nothing to embed: give at least one text, image or audio")
    if len(parsed.items) > limits.max_inputs_per_request:
        raise OmnivecError(
            ErrorCode.TOO_MANY_INPUTS,
            f"{len(parsed.items)} inputs is over the limit of {limits.max_inputs_per_request} per request; split the request",
        )


async def parse_embed_request(request: Request, limits: LimitsSettings, require: Require = lambda model, modality: None) -> ParsedEmbed:
    """The request's inputs in output order, media decoded; `require` refuses unknown models and modalities the model does not serve."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json") or "+json" in content_type.split(";")[0]:
        return await _parse_json(request, limits, require)
    if content_type.startswith("multipart/form-data"):
        return await _parse_multipart(request, limits, require)
    raise OmnivecError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"content type {content_type or 'none'!r} is not accepted; send application/json or multipart/form-data",
    )


@router.post(
    "/v1/embed",
    response_model=EmbedResponse,
    summary="Embed texts, images and audio into the model's shared space",
    description="Output order: `inputs` in order if given, else texts, then images, then audios. An audio file is split "
    "into the model's windows (clip/hop from the bundle); its embedding is the renormalised mean of the window "
    "embeddings, and `audio_windows: true` also returns each window with its time span.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EmbedRequest"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "texts": {"type": "array", "items": {"type": "string"}},
                            "images": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "image/* or application/octet-stream"},
                            "audios": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "audio/* or application/octet-stream (WAV, FLAC, OGG/Vorbis, Opus, MP3)",
                            },
                            "encoding": {"type": "string", "enum": list(ENCODINGS)},
                            "dimensions": {"type": "integer", "minimum": 1, "description": "keep the first n components, renormalised"},
                            "truncate": {"type": "boolean"},
                            "audio_windows": {"type": "boolean", "description": "also return per-window embeddings and spans"},
                            "model": {"type": "string", "description": "a loaded model's name (GET /v1/models); default: the default model"},
                        },
                    }
                },
            },
        }
    },
    responses=route_errors(VALIDATED, STARTING, MODEL_INPUTS, (ErrorCode.MODEL_NOT_FOUND,)),
)
async def embed(request: Request, _permit: None = Depends(admitted)) -> EmbedResponse:
    models: ModelRegistry = app_state(request, "models")
    parsed = await parse_embed_request(request, request.app.state.settings.limits, lambda model, modality: models.get(model).service.require(modality))  # type: ignore[union-attr]
    entry = models.get(parsed.model)
    async with models.lease(entry) as service:
        return await _embed(request, service, parsed, entry.name)


async def _embed(request: Request, service: EmbeddingService, parsed: ParsedEmbed, model_name: str) -> EmbedResponse:
    dim = check_dimensions(parsed.dimensions, service.manifest)
    groups = {m: [item for item in parsed.items if item.modality == m] for m in LIST_FIELDS.values()}
    texts, images, audios = groups["text"], groups["image"], groups["audio"]
    text_result, image_vectors, audio_result = await cancel_on_disconnect(
        request,
        asyncio.gather(
            service.embed_texts([t.value for t in texts], truncate=parsed.truncate, labels=[t.label for t in texts]),  # type: ignore[misc]
            service.embed_images([i.value for i in images], labels=[i.label for i in images]),  # type: ignore[misc]
            service.embed_audios([a.value for a in audios], labels=[a.label for a in audios]),  # type: ignore[misc]
        ),
    )
    rows = {m: iter(range(len(group))) for m, group in groups.items()}
    data: list[EmbeddingItem] = []
    warnings: list[str] = [w for w in [nested_warning(dim, service.manifest)] if w]

    def encoded(vector: np.ndarray) -> list[float] | list[int] | str:
        return encode_vector(prefix(vector, dim) if dim < service.manifest.embed_dim else vector, parsed.encoding)

    for position, item in enumerate(parsed.items):
        row = next(rows[item.modality])
        extra: dict = {}
        if item.modality == "text":
            vector = text_result.vectors[row]
            extra["truncated"] = text_result.truncated[row]
            if extra["truncated"]:
                context = service.manifest.towers["text"].preprocess.context_length  # type: ignore[union-attr]
                warnings.append(f"text {item.input_index} was truncated to {context} tokens")
        elif item.modality == "image":
            vector = image_vectors[row]
        else:
            vector = audio_result.vectors[row]
            extra["duration_s"] = audio_result.durations[row]
            if parsed.audio_windows:
                extra["windows"] = [
                    AudioWindowOut(start_s=start, end_s=end, embedding=encoded(window))
                    for (start, end), window in zip(audio_result.spans[row], audio_result.windows[row])
                ]
        data.append(
            EmbeddingItem(
                index=position,
                input_index=item.input_index,
                modality=item.modality,  # type: ignore[arg-type]
                embedding=encoded(vector),
                **extra,
            )
        )
    manifest = service.manifest
    return EmbedResponse(
        model=model_name,
        space_id=manifest.space_id,
        dim=dim,
        encoding=parsed.encoding,  # type: ignore[arg-type]
        data=data,
        usage=Usage(
            texts=len(texts),
            images=len(images),
            audios=len(audios),
            text_tokens=sum(text_result.token_counts),
            audio_seconds=round(sum(audio_result.durations), 3),
        ),
        warnings=warnings,
    )
