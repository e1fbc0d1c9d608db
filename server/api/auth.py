"""Optional API-key authentication for the API (OMNIVEC_SERVER__API_KEYS).

Several comma-separated keys may be valid at once, so a key can be rotated without downtime: add
the new one, move clients, remove the old. Liveness/readiness probes, /metrics and the API docs
stay open (orchestrators and Prometheus scrape them without credentials), and so do the search page's
static files at / and /ui/ (they hold no data; the page asks for a key); everything else needs
`Authorization: Bearer KEY` or `X-API-Key: KEY`. Keys are compared in constant time.

Admin keys (OMNIVEC_SERVER__ADMIN_KEYS) are API keys that may also change what the server serves:
load and unload models, re-embed collections (`require_admin`). With no API keys set the server is
open, admin operations included, as everything else is.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ErrorCode, OmnivecError

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/"})
OPEN_PREFIXES = ("/ui/",)  # the search page's static files: public code, no data (the page asks for a key on 401)


def parse_keys(value: str | None) -> tuple[bytes, ...]:
    """The configured keys: comma-separated, blanks ignored."""
    return tuple(k.strip().encode() for k in (value or "").split(",") if k.strip())


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key a request carries, from `Authorization: Bearer ...` or `X-API-Key`."""
    auth = headers.get(b"authorization", b"")
    scheme, _, token = auth.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key") or None


def _matches(key: bytes | None, keys: tuple[bytes, ...]) -> bool:
    # compare against every key (no early exit), so timing says nothing about which one matched
    return key is not None and sum(hmac.compare_digest(key, k) for k in keys) > 0


def require_admin(request: Request) -> None:
    """FastAPI dependency of the routes that change what is served: 403 unless the key is an admin key (when keys are set)."""
    server = request.app.state.settings.server
    if not parse_keys(server.api_keys):
        return
    admins = parse_keys(server.admin_keys)
    if not _matches(presented_key(dict(request.scope.get("headers") or [])), admins):
        hint = "send one of OMNIVEC_SERVER__ADMIN_KEYS" if admins else "this server has no admin keys: set OMNIVEC_SERVER__ADMIN_KEYS and send one"
        raise OmnivecError(ErrorCode.FORBIDDEN, f"{request.method} {request.url.path} changes the served models or collections and needs an admin key; {hint}")


class ApiKeyAuth:
    """Refuse requests without a valid key with 401 unauthorized (only installed when keys are set)."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...], send_error) -> None:
        self.app = app
        self.keys = keys
        self.send_error = send_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = presented_key(dict(scope.get("headers") or []))
        if _matches(key, self.keys):
            await self.app(scope, receive, send)
            return
        message = (
            "this server requires an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            if key is None
            else "the API key is not valid; check it against the server's OMNIVEC_SERVER__API_KEYS"
        )
        await self.send_error(send, OmnivecError(ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}), scope)
