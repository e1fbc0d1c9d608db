"""Reading bodies by hand for routes that take JSON or multipart, with the API's error shapes.

FastAPI's automatic body parsing handles one content type per route; the indexing, search and
classify routes take both (JSON for base64/URLs, multipart for file uploads), so they read the
body here and validate it with the same pydantic models the OpenAPI documents.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from ..errors import ErrorCode, OmnivecError
from ..index.filters import PAYLOAD_PATH_PATTERN, PAYLOAD_PATH_RULE
from ..settings import LimitsSettings
from ..media import FORM_CONTROL_FIELDS, MEDIA_MODALITIES, check_content_type, check_size, detect_modality
from .json_limits import loads_bounded
from .schemas import NAME_PATTERN, NAME_RULE

M = TypeVar("M", bound=BaseModel)


def body_kind(request: Request) -> Literal["json", "multipart"]:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json") or "+json" in content_type.split(";")[0]:
        return "json"
    if content_type.startswith("multipart/form-data"):
        return "multipart"
    raise OmnivecError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"content type {content_type or 'none'!r} is not accepted; send application/json or multipart/form-data",
    )


async def read_form(request: Request, max_files: int) -> FormData:
    """The multipart form: up to `max_files` file parts plus the media module's allowance of control
    fields; a broken or over-long form is a 400 / 413 from the error table."""
    try:
        return await request.form(max_files=max_files, max_fields=max_files + FORM_CONTROL_FIELDS)
    except HTTPException as exc:
        detail = str(exc.detail)
        if detail.startswith(("Too many files", "Too many fields")):
            raise OmnivecError(ErrorCode.TOO_MANY_INPUTS, f"{detail}; split the request") from exc
        raise OmnivecError(ErrorCode.MALFORMED_BODY, f"the multipart body cannot be parsed ({detail}); send a well-formed multipart/form-data body") from exc


def error_text(err: Any) -> str:
    """pydantic's message for one error, with the naming rule spelled out for collection/label set names."""
    pattern = (err.get("ctx") or {}).get("pattern") if err.get("type") == "string_pattern_mismatch" else None
    if pattern == NAME_PATTERN:
        return f"invalid name {err.get('input')!r}: use {NAME_RULE} (e.g. 'photos_2024')"
    if pattern == PAYLOAD_PATH_PATTERN:
        return f"{err.get('input')!r} is not a payload path: use {PAYLOAD_PATH_RULE} (e.g. 'meta.color')"
    return str(err.get("msg"))


def validation_message(exc: ValidationError, where: str = "") -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in (where, *err.get("loc", ())) if p != "")
        parts.append(f"{loc or 'body'}: {error_text(err)}")
    return "; ".join(parts)


def validation_error(exc: ValidationError, where: str = "") -> OmnivecError:
    """422 unknown_field when the only problem is fields the model does not have, else invalid_request."""
    errors = exc.errors()
    code = ErrorCode.UNKNOWN_FIELD if errors and all(e.get("type") == "extra_forbidden" for e in errors) else ErrorCode.INVALID_REQUEST
    return OmnivecError(code, validation_message(exc, where))


def validated(model: type[M], raw: Any, where: str = "") -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, where) from exc


def parse_json(text: str | bytes, what: str) -> Any:
    try:
        return loads_bounded(text)
    except ValueError as exc:  # JSONDecodeError, and JsonBodyError for deep nesting, huge or non-finite numbers
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{what} is not valid JSON ({exc})") from exc


async def json_object(request: Request, example: str) -> dict:
    """The body as a JSON object (400 when empty, 422 when not a JSON object)."""
    body = await request.body()
    if not body.strip():
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, f"the request body is empty; send a JSON object such as {example}")
    raw = parse_json(body, "the body")
    if not isinstance(raw, dict):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"the body must be a JSON object such as {example}")
    return raw


def form_json(value: Any, name: str, kind: type) -> Any:
    """A multipart field holding JSON (`items`, `payload`, `params`)."""
    if not isinstance(value, str):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"form field {name!r} must be a plain text field holding JSON, not a file")
    raw = parse_json(value, f"form field {name!r}")
    if not isinstance(raw, kind):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"form field {name!r} must hold a JSON {'object' if kind is dict else 'array'}")
    return raw


async def read_upload(value: UploadFile | str, label: str, limits: LimitsSettings, modality: str | None = None) -> tuple[str, bytes]:
    """An uploaded media part -> (modality, bytes), size capped while reading (413).

    With `modality` the declared type must fit it (415); without, the part may be an image or an
    audio file and its modality is detected (declared type, file name, magic bytes).
    """
    if not isinstance(value, UploadFile):
        what = f"base64 {modality}s" if modality else "base64 media"
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{label} must be a file part; send {what} in a JSON body instead")
    if modality is not None:
        check_content_type(value.content_type, modality, label)
    caps = {m: limits.max_bytes(m) for m in MEDIA_MODALITIES}
    data = await value.read((caps[modality] if modality else max(caps.values())) + 1)
    modality = modality or detect_modality(value.content_type, value.filename, data, label)
    check_size(data, modality, label, caps[modality])
    return modality, data


def upload_label(base: str, value: Any) -> str:
    name = value.filename if isinstance(value, UploadFile) else None
    return f"{base} ({name})" if name else base


def app_state(request: Request, name: str) -> Any:
    """A service the lifespan put on app.state, or 503 while the server is still starting."""
    value = getattr(request.app.state, name, None)
    if value is None:
        raise OmnivecError(ErrorCode.NOT_READY, "the server is still starting; retry in a few seconds")
    return value


def check_count(n: int, limits: LimitsSettings, what: str) -> None:
    if n == 0:
        raise OmnivecError(ErrorCode.EMPTY_REQUEST, f"no {what} given")
    if n > limits.max_inputs_per_request:
        raise OmnivecError(ErrorCode.TOO_MANY_INPUTS, f"{n} {what} is over the limit of {limits.max_inputs_per_request} per request; split the request")
