"""ASGI middleware: the request-body limit (413 before or while the body streams) and request metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ErrorCode, OmnivecError
from ..metrics import Metrics
from .error_handlers import send_error

__all__ = ["BodySizeLimit", "RequestMetrics"]


class BodySizeLimit:
    """Refuse bodies over the limit with 413, from Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}  # routes with a limit of their own (bundle uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.per_path:
            await BodySizeLimit(self.app, self.per_path[scope["path"]])(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, self._error(int(declared)), scope)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error(seen)
            return message

        await self.app(scope, limited_receive, send)

    def _error(self, size: int) -> OmnivecError:
        return OmnivecError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request body of {size}+ bytes is over the limit of {self.max_bytes}; split it into smaller requests "
            "(or raise OMNIVEC_LIMITS__MAX_REQUEST_BYTES; bundle uploads: OMNIVEC_LIMITS__MAX_BUNDLE_UPLOAD_BYTES)",
        )


class RequestMetrics:
    """Count requests by route template (not raw path: ids must not explode label cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.request_latency.labels(path).observe(time.monotonic() - started)
