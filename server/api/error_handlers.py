"""Every error leaves through here: the error table's body (or OpenAI's on the OpenAI-compatible
routes), framework errors (404/405/validation/multipart) mapped onto the table, and an `internal`
code with a request id for bugs."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Message, Scope, Send

from ..errors import ErrorCode, OmnivecError, status_code
from .bodies import error_text
from .routes_openai import OPENAI_PATHS, openai_error_body

__all__ = ["error_response", "send_error", "request_id", "allowed_methods", "install_error_handlers"]

log = logging.getLogger("omnivec")


def error_response(path: str, exc: OmnivecError, request_id: str | None = None) -> JSONResponse:
    """An error in the API's shape, or in OpenAI's on the OpenAI-compatible routes (so OpenAI clients surface it)."""
    body = openai_error_body(exc) if path in OPENAI_PATHS else exc.to_body(request_id=request_id)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def send_error(send: Send, exc: OmnivecError, scope: Scope | None = None) -> None:
    response = error_response((scope or {}).get("path", ""), exc)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


def request_id(request: Request) -> str:
    """The caller's X-Request-ID if it sent one, else a fresh id: the key to this request's log lines."""
    given = request.headers.get("x-request-id", "")
    return given[:64] if given.isprintable() and given.strip() else uuid.uuid4().hex


def _flat_routes(app: FastAPI) -> list:
    """Every route, with included routers expanded (FastAPI >= 0.16x keeps them as one entry each)."""
    from fastapi import routing

    if hasattr(routing, "iter_route_contexts"):
        return list(routing.iter_route_contexts(app.routes))
    return list(app.routes)


def allowed_methods(request: Request) -> list[str]:
    """The methods of the path's resource, for `Allow` on a 405.

    Several routes can match one URL (GET and DELETE on /v1/collections/{name} are two routes, and
    .../items/{item_id:path} also matches .../items/scroll); as in OpenAPI, a concrete template wins over
    a more templated one, and the methods of the equally concrete matches are joined.
    """
    found: dict[int, set[str]] = {}
    for route in _flat_routes(request.app):
        methods = getattr(route, "methods", None)
        if not methods or route.matches(request.scope)[0] == Match.NONE:
            continue
        found.setdefault(route.path.count("{"), set()).update(methods)
    return sorted(found[min(found)]) if found else []


def _validation_message(request: Request, exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        if e.get("type") == "json_invalid":  # FastAPI's JSON parse error: the reason is in ctx
            parts.append(f"the body is not acceptable JSON: {(e.get('ctx') or {}).get('error', 'JSON decode error')}")
        else:
            what = "label set" if request.url.path.startswith("/v1/labelsets") or where.endswith("labelset") else "collection"
            parts.append(f"{where}: {error_text(e).replace('invalid name', f'invalid {what} name')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmnivecError)
    async def omnivec_error(request: Request, exc: OmnivecError) -> JSONResponse:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = ErrorCode.UNKNOWN_FIELD if errors and all(e.get("type") == "extra_forbidden" for e in errors) else ErrorCode.INVALID_REQUEST
        err = OmnivecError(code, _validation_message(request, exc) or "invalid request")
        return error_response(request.url.path, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Framework errors (routing, form parsing) mapped onto the error table, so the status matches the code."""
        path = request.url.path
        if exc.status_code == 404:
            err = OmnivecError(ErrorCode.NOT_FOUND, f"no route {request.method} {path}; see /docs")
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            err = OmnivecError(
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {path}; it accepts {', '.join(allowed)} (see /docs)",
                headers={"Allow": ", ".join(allowed)},
            )
        elif str(exc.detail).startswith("Too many"):  # multipart: more files or fields than the limit
            err = OmnivecError(ErrorCode.TOO_MANY_INPUTS, f"{exc.detail}; split the request")
        else:
            err = OmnivecError(status_code(exc.status_code), str(exc.detail), headers=getattr(exc, "headers", None))
        return error_response(path, err)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.error("unhandled error in %s %s [request %s]", request.method, request.url.path, rid, exc_info=exc)
        err = OmnivecError(
            ErrorCode.INTERNAL,
            f"internal error ({exc.__class__.__name__}); the server logged the details under request id {rid}",
            headers={"X-Request-ID": rid},
        )
        return error_response(request.url.path, err, request_id=rid)
