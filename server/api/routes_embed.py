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
from .media import check_content_type, check_size, decode_media_string
from .schemas import EmbeddingItem, EmbedRequest, EmbedResponse, Usage

router = APIRouter()

KNOWN_MODALITY_FIELDS = {"texts": "text", "images": "image", "audios": "audio", "text": "text", "image": "image", "audio": "audio"}
JSON_FIELDS = set(EmbedRequest.model_fields)


@dataclass
class ParsedEmbed:
    """Inputs in output order: (modality, input_index, text or bytes)."""

    items: list[tuple[str, int, str | bytes]] = field(default_factory=list)
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
            parsed.items.append((inp.modality, i, value))  # type: ignore[arg-type]
    else:
        parsed.items += [("text", i, t) for i, t in enumerate(req.texts)]
        parsed.items += [("image", i, s) for i, s in enumerate(req.images)]
    _check_count(parsed, limits)
    for idx, (modality, i, value) in enumerate(parsed.items):
        if modality == "image":
            label = f"inputs[{i}].image" if req.inputs else f"images[{i}]"
            parsed.items[idx] = (modality, i, decode_media_string(value, "image", label, limits.max_image_bytes))  # type: ignore[arg-type]
    return parsed


async def _parse_multipart(request: Request, limits: LimitsSettings) -> ParsedEmbed:
    form = await request.form(max_files=limits.max_inputs_per_request, max_fields=limits.max_inputs_per_request + 8)
    parsed = ParsedEmbed()
    texts: list[str] = []
    images: list[bytes] = []
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
            if isinstance(value, UploadFile):
                texts.append((await value.read()).decode("utf-8", errors="replace"))
            else:
                texts.append(value)
        elif name in ("images", "image"):
            label = f"images[{len(images)}]" + (f" ({value.filename})" if isinstance(value, UploadFile) and value.filename else "")
            if not isinstance(value, UploadFile):
                images.append(decode_media_string(value, "image", label, limits.max_image_bytes))
                continue
            check_content_type(value.content_type, "image", label)
            data = await value.read(limits.max_image_bytes + 1)
            check_size(data, "image", label, limits.max_image_bytes)
            images.append(data)
        else:
            raise _unknown_field_error(name)
    parsed.items = [("text", i, t) for i, t in enumerate(texts)] + [("image", i, b) for i, b in enumerate(images)]
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
    texts = [(i, v) for m, i, v in parsed.items if m == "text"]
    images = [(i, v) for m, i, v in parsed.items if m == "image"]
    for modality, group in (("text", texts), ("image", images)):
        if group:
            service.require(modality)
    text_result, image_vectors = await asyncio.gather(
        service.embed_texts([v for _, v in texts], truncate=parsed.truncate),  # type: ignore[misc]
        service.embed_images([v for _, v in images], labels=[f"images[{i}]" for i, _ in images]),  # type: ignore[misc]
    )
    text_rows = iter(range(len(texts)))
    image_rows = iter(range(len(images)))
    data: list[EmbeddingItem] = []
    warnings: list[str] = []
    for position, (modality, input_index, _) in enumerate(parsed.items):
        if modality == "text":
            row = next(text_rows)
            truncated = text_result.truncated[row]
            if truncated:
                warnings.append(f"text {input_index} was truncated to {service.manifest.towers['text'].preprocess.context_length} tokens")  # type: ignore[union-attr]
            vector = text_result.vectors[row]
        else:
            row, truncated = next(image_rows), None
            vector = image_vectors[row]
        data.append(EmbeddingItem(index=position, input_index=input_index, modality=modality, embedding=encode_vector(vector, parsed.encoding), truncated=truncated))  # type: ignore[arg-type]
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
