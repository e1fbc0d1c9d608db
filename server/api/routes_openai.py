"""POST /v1/embeddings: OpenAI's embeddings API, so OpenAI clients and the frameworks built on them work unchanged.

The request and response follow OpenAI's shapes (`input` string or list, `model`, `encoding_format`,
`dimensions`, `user`; `data[].embedding`, `usage`), and errors on this route use OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`) with the status and code from the error table.
Extension: `input` items may be objects `{"image": ...}` / `{"audio": ...}` (data: URI, base64 or URL),
embedded into the same space as the texts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from ..errors import ErrorCode, OmnivecError
from ..fetch import UrlFetcher
from ..inference.encoder import l2_normalize
from ..services.embedding import EmbeddingService
from ..services.models import LoadedModel, ModelRegistry
from ..media import check_size, decode_media_string
from .admission import admitted
from .bodies import app_state, check_count, json_object
from .disconnect import cancel_on_disconnect
from .json_limits import BoundedJsonRoute
from .responses import MODEL_INPUTS, STARTING, URL_INPUTS, VALIDATED, route_errors
from .encodings import encode_vector
from .schemas_openai import EmbeddingData, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, MediaInput

router = APIRouter(tags=["openai"], route_class=BoundedJsonRoute)
OPENAI_PATHS = frozenset({"/v1/embeddings"})  # errors on these paths are rendered in OpenAI's shape
INPUT_NEUTRAL = {ErrorCode.OVERLOADED, ErrorCode.NOT_READY, ErrorCode.UNAUTHORIZED, ErrorCode.PAYLOAD_TOO_LARGE}  # not about one input
EXAMPLE = '{"model": "<GET /v1/models>", "input": ["a photo of a dog"]}'
TOKEN_ARRAYS = (
    "input holds token ids; this server tokenises text with the model's own tokenizer (not tiktoken), so send the "
    "strings themselves (LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False))"
)


def openai_error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error_body(err: OmnivecError) -> dict:
    """The OpenAI error shape of a table error; `param` names the request field at fault when one is known."""
    return {"error": {"message": err.message, "type": openai_error_type(err.status), "param": getattr(err, "param", None), "code": err.code.value}}


def _error(code: ErrorCode, message: str, param: str | None) -> OmnivecError:
    err = OmnivecError(code, message)
    err.param = param  # type: ignore[attr-defined]
    return err


def served_model_names(models: ModelRegistry) -> list[str]:
    """The names `model` may take: every loaded model's (GET /v1/models)."""
    return models.names()


def _check_input_shape(value: Any) -> None:
    """Clear messages for the shapes OpenAI clients send that this server does not take (before pydantic's union errors)."""
    if value is None:
        raise _error(ErrorCode.INVALID_REQUEST, f"no input: send a string or a list of strings, e.g. {EXAMPLE}", "input")
    if isinstance(value, str):
        if not value:
            raise _error(ErrorCode.INVALID_REQUEST, "input is an empty string; send the text to embed", "input")
        return
    if not isinstance(value, list):
        raise _error(ErrorCode.INVALID_REQUEST, f"input must be a string or a list, not {type(value).__name__}", "input")
    if not value:
        raise _error(ErrorCode.EMPTY_REQUEST, "input is an empty list; send at least one string", "input")
    for i, item in enumerate(value):
        if isinstance(item, (int, list)) and not isinstance(item, bool):
            raise _error(ErrorCode.INVALID_REQUEST, TOKEN_ARRAYS, "input")
        if isinstance(item, str):
            if not item:
                raise _error(ErrorCode.INVALID_REQUEST, f"input[{i}] is an empty string; leave it out or send text", "input")
        elif not isinstance(item, dict):
            raise _error(ErrorCode.INVALID_REQUEST, f"input[{i}] is a {type(item).__name__}; items are strings or objects like {{\"image\": \"data:...\"}}", "input")
        else:
            try:
                MediaInput.model_validate(item)
            except ValidationError as exc:
                detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()[:3])
                raise _error(ErrorCode.INVALID_REQUEST, f"input[{i}]: {detail}", "input") from exc


async def _parse(request: Request, models: ModelRegistry) -> tuple[EmbeddingsRequest, LoadedModel]:
    raw = await json_object(request, EXAMPLE)
    served = served_model_names(models)
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _error(ErrorCode.INVALID_REQUEST, f"no model: set \"model\" to one of {served}", "model")
    if model not in served:
        raise _error(ErrorCode.MODEL_NOT_FOUND, f"the model {model!r} is not served here; this server serves {served} (GET /v1/models)", "model")
    entry = models.get(model)
    service: EmbeddingService = entry.service  # type: ignore[assignment]
    _check_input_shape(raw.get("input"))
    try:
        body = EmbeddingsRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        detail = "; ".join(f"{e['loc'][0] if e['loc'] else 'body'}: {e['msg']}" for e in exc.errors()[:3])
        if first["type"] == "extra_forbidden":
            detail = f"unknown field {param!r}; the fields are input, model, encoding_format, dimensions and user"
        raise _error(ErrorCode.INVALID_REQUEST, detail, param) from exc
    dim = service.manifest.embed_dim
    if body.dimensions is not None and body.dimensions > dim:
        raise _error(
            ErrorCode.INVALID_REQUEST,
            f"dimensions={body.dimensions} is more than {model!r} gives ({dim}); ask for 1..{dim} or leave dimensions out",
            "dimensions",
        )
    return body, entry


async def _media_bytes(item: MediaInput, label: str, request: Request) -> bytes:
    """An image/audio item's file bytes: fetched (URL) or decoded (data: URI / base64), size-checked."""
    modality = item.modality
    value: str = getattr(item, modality)
    limits = request.app.state.settings.limits
    if value.startswith(("http://", "https://")):
        fetcher: UrlFetcher = app_state(request, "fetcher")
        _, data = await fetcher.fetch_media(value, label, (modality,))
        check_size(data, modality, label, limits.max_bytes(modality))
        return data
    return decode_media_string(value, modality, label, limits.max_bytes(modality))


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    summary="OpenAI-compatible embeddings (texts, and images/audio as object items)",
    description="OpenAI's embeddings API: point an OpenAI client's base_url at this server's /v1. `input` is a string or a "
    "list; besides strings, list items may be objects {\"image\": ...} or {\"audio\": ...} holding a data: URI, base64 or an "
    "http(s) URL, embedded into the same shared space (omnivec extension). Texts longer than the model's context are "
    "truncated (use /v1/embed with truncate=false to refuse them instead). `dimensions` keeps the first n components and "
    "renormalises them. `usage` counts text tokens with the model's tokenizer. Errors use OpenAI's error shape.",
    responses=route_errors(VALIDATED, STARTING, MODEL_INPUTS, URL_INPUTS, (ErrorCode.MODEL_NOT_FOUND,), schema="OpenAIErrorResponse"),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EmbeddingsRequest"}}}}},
)
async def embeddings(request: Request, _permit: None = Depends(admitted)) -> EmbeddingsResponse:
    models: ModelRegistry = app_state(request, "models")
    body, entry = await _parse(request, models)
    try:
        async with models.lease(entry) as service:
            return await _embed(request, service, body)
    except OmnivecError as exc:  # a bad input item (undecodable image, text too long, ...): OpenAI clients show `param`
        if getattr(exc, "param", None) is None and 400 <= exc.status < 500 and exc.code not in INPUT_NEUTRAL:
            exc.param = "input"  # type: ignore[attr-defined]
        raise


async def _embed(request: Request, service: EmbeddingService, body: EmbeddingsRequest) -> EmbeddingsResponse:
    items: list[str | MediaInput] = [body.input] if isinstance(body.input, str) else list(body.input)
    check_count(len(items), request.app.state.settings.limits, "inputs")
    modalities = ["text" if isinstance(item, str) else item.modality for item in items]
    for modality in dict.fromkeys(modalities):
        service.require(modality)  # "no audio tower" before any download or decoding
    groups: dict[str, list[int]] = {m: [i for i, mod in enumerate(modalities) if mod == m] for m in ("text", "image", "audio")}

    def text_of(item: str | MediaInput) -> str:
        return item if isinstance(item, str) else item.text  # type: ignore[return-value]

    media = groups["image"] + groups["audio"]
    datas = await asyncio.gather(*(_media_bytes(items[i], f"input[{i}].{modalities[i]}", request) for i in media))  # type: ignore[arg-type]
    data_of = dict(zip(media, datas))
    text_result, image_vectors, audio_result = await cancel_on_disconnect(
        request,
        asyncio.gather(
            service.embed_texts([text_of(items[i]) for i in groups["text"]], labels=[f"input[{i}]" for i in groups["text"]]),
            service.embed_images([data_of[i] for i in groups["image"]], labels=[f"input[{i}].image" for i in groups["image"]]),
            service.embed_audios([data_of[i] for i in groups["audio"]], labels=[f"input[{i}].audio" for i in groups["audio"]]),
        ),
    )
    vectors = np.zeros((len(items), service.manifest.embed_dim), np.float32)
    for modality, rows in (("text", text_result.vectors), ("image", image_vectors), ("audio", audio_result.vectors)):
        if groups[modality]:
            vectors[groups[modality]] = rows
    if body.dimensions is not None:
        vectors = l2_normalize(vectors[:, : body.dimensions])
    tokens = int(sum(text_result.token_counts))
    return EmbeddingsResponse(
        data=[EmbeddingData(index=i, embedding=encode_vector(v, body.encoding_format)) for i, v in enumerate(vectors)],
        model=body.model,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
