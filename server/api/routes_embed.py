"""POST /v1/embed: JSON or multipart in, normalised embeddings out, in a predictable order."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field

import numpy as np
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ..errors import ErrorCode, OmnivecError
from ..services.embedding import EmbeddingService
from ..settings import LimitsSettings
from .disconnect import cancel_on_disconnect
from .media import check_content_type, check_size, decode_media_string
from .schemas import EmbeddingItem, EmbedRequest, EmbedResponse, Usage

router = APIRouter()

KNOWN_MODALITY_FIELDS = {"texts": "text", "images": "image", "audios": "audio", "text": "text", "image": "image", "audio": "audio"}
JSON_FIELDS = set(EmbedRequest.model_fields)


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


def _unknown_field_error(name: str) -> OmnivecError:
    if name in KNOWN_MODALITY_FIELDS:
        return OmnivecError(ErrorCode.MODALITY_NOT_SERVED, f"{name!r}: this server does not take {KNOWN_MODALITY_FIELDS[name]} inputs on /v1/embed yet")
    return OmnivecError(
        ErrorCode.UNKNOWN_MODALITY,
        f"unknown field {name!r}: /v1/embed takes texts (strings), images (base64 or data: URIs), "
        "inputs ([{'text': ...} | {'image': ...}]), encoding and truncate",
    )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts)


async def _parse_json(request: Request, limits: LimitsSettings) -> ParsedEmbed:
    body = await request.body()
    if not body.strip():
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, "the request body is empty; send {\"texts\": [...]} and/or {\"images\": [...]}")
    try:
        raw = json.loads(body)
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
                if name not in ("text", "image"):
                    err = _unknown_field_error(name)
                    err.message = f"inputs[{i}]: {err.message}"
                    raise err
    try:
        req = EmbedRequest.model_validate(raw)
    except ValidationError as exc:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, _validation_message(exc)) from exc
    parsed = ParsedEmbed(encoding=req.encoding, truncate=req.truncate)
    if req.inputs:
        if req.texts or req.images:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, "use either `inputs` or `texts`/`images` in one request, not both")
        for i, inp in enumerate(req.inputs):
            value = inp.text if inp.modality == "text" else inp.image
            parsed.items.append(ParsedInput(inp.modality, i, value, f"inputs[{i}].{inp.modality}"))  # type: ignore[arg-type]
    else:
        parsed.items += [ParsedInput("text", i, t, f"texts[{i}]") for i, t in enumerate(req.texts)]
        parsed.items += [ParsedInput("image", i, s, f"images[{i}]") for i, s in enumerate(req.images)]
    _check_count(parsed, limits)
    for item in parsed.items:
        if item.modality == "image":
            item.value = decode_media_string(item.value, "image", item.label, limits.max_image_bytes)  # type: ignore[arg-type]
    return parsed


async def _parse_multipart(request: Request, limits: LimitsSettings) -> ParsedEmbed:
    form = await request.form(max_files=limits.max_inputs_per_request, max_fields=limits.max_inputs_per_request + 8)
    parsed = ParsedEmbed()
    texts: list[ParsedInput] = []
    images: list[ParsedInput] = []
    for name, value in form.multi_items():
        if name in ("encoding", "truncate"):
            if not isinstance(value, str):
                raise OmnivecError(ErrorCode.INVALID_REQUEST, f"form field {name!r} must be a plain value")
            if name == "encoding":
                if value not in ("float", "base64"):
                    raise OmnivecError(ErrorCode.INVALID_REQUEST, "encoding must be 'float' or 'base64'")
                parsed.encoding = value
            else:
                parsed.truncate = value.strip().lower() not in ("false", "0", "no")
        elif name in ("texts", "text"):
            text = (await value.read()).decode("utf-8", errors="replace") if isinstance(value, UploadFile) else value
            texts.append(ParsedInput("text", len(texts), text, f"texts[{len(texts)}]"))
        elif name in ("images", "image"):
            label = f"images[{len(images)}]" + (f" ({value.filename})" if isinstance(value, UploadFile) and value.filename else "")
            if isinstance(value, UploadFile):
                check_content_type(value.content_type, "image", label)
                data = await value.read(limits.max_image_bytes + 1)
                check_size(data, "image", label, limits.max_image_bytes)
            else:
                data = decode_media_string(value, "image", label, limits.max_image_bytes)
            images.append(ParsedInput("image", len(images), data, label))
        else:
            raise _unknown_field_error(name)
    parsed.items = texts + images
    _check_count(parsed, limits)
    return parsed


def _check_count(parsed: ParsedEmbed, limits: LimitsSettings) -> None:
    if not parsed.items:
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, "nothing to embed: give at least one text or image")
    if len(parsed.items) > limits.max_inputs_per_request:
        raise OmnivecError(
            ErrorCode.TOO_MANY_INPUTS,
            f"{len(parsed.items)} inputs is over the limit of {limits.max_inputs_per_request} per request; split the request",
        )


async def parse_embed_request(request: Request, limits: LimitsSettings) -> ParsedEmbed:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json") or "+json" in content_type.split(";")[0]:
        return await _parse_json(request, limits)
    if content_type.startswith("multipart/form-data"):
        return await _parse_multipart(request, limits)
    raise OmnivecError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"content type {content_type or 'none'!r} is not accepted; send application/json or multipart/form-data",
    )


def encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post(
    "/v1/embed",
    response_model=EmbedResponse,
    summary="Embed texts and images into the model's shared space",
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
                            "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "encoding": {"type": "string", "enum": ["float", "base64"]},
                            "truncate": {"type": "boolean"},
                        },
                    }
                },
            },
        }
    },
)
async def embed(request: Request) -> EmbedResponse:
    service: EmbeddingService = request.app.state.service
    parsed = await parse_embed_request(request, request.app.state.settings.limits)
    texts = [item for item in parsed.items if item.modality == "text"]
    images = [item for item in parsed.items if item.modality == "image"]
    text_result, image_vectors = await cancel_on_disconnect(
        request,
        asyncio.gather(
            service.embed_texts([t.value for t in texts], truncate=parsed.truncate, labels=[t.label for t in texts]),  # type: ignore[misc]
            service.embed_images([i.value for i in images], labels=[i.label for i in images]),  # type: ignore[misc]
        ),
    )
    text_rows = iter(range(len(texts)))
    image_rows = iter(range(len(images)))
    data: list[EmbeddingItem] = []
    warnings: list[str] = []
    for position, item in enumerate(parsed.items):
        if item.modality == "text":
            row = next(text_rows)
            truncated = text_result.truncated[row]
            if truncated:
                context = service.manifest.towers["text"].preprocess.context_length  # type: ignore[union-attr]
                warnings.append(f"text {item.input_index} was truncated to {context} tokens")
            vector = text_result.vectors[row]
        else:
            row, truncated = next(image_rows), None
            vector = image_vectors[row]
        data.append(
            EmbeddingItem(
                index=position,
                input_index=item.input_index,
                modality=item.modality,  # type: ignore[arg-type]
                embedding=encode_vector(vector, parsed.encoding),
                truncated=truncated,
            )
        )
    manifest = service.manifest
    return EmbedResponse(
        model=manifest.model_name,
        space_id=manifest.space_id,
        dim=manifest.embed_dim,
        encoding=parsed.encoding,  # type: ignore[arg-type]
        data=data,
        usage=Usage(texts=len(texts), images=len(images), text_tokens=sum(text_result.token_counts)),
        warnings=warnings,
    )
