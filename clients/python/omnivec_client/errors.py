"""The one exception the client raises, carrying the server's stable error code."""

from __future__ import annotations


class OmnivecError(Exception):
    """The server refused or failed a request, or could not be reached.

    `code` is the server's machine-readable code (`invalid_image`, `collection_not_found`,
    `overloaded`, ...; `connection_failed` when no server answered, `no_answer` when a sent request
    got no complete answer), `status` the HTTP status (0 without
    an answer), and the message is the server's own, which says what to do instead.
    """

    def __init__(self, message: str, *, code: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else "no answer"
        return f"{self.message} [{self.code}, {where}]"


def transport_error(base_url: str, exc: Exception, *, sent: bool) -> OmnivecError:
    """Why no answer came, with what to check: no server, or a server too slow for the timeout."""
    if not sent:
        return OmnivecError(
            f"no omnivec server answered at {base_url} ({exc.__class__.__name__}: {exc}); "
            "check the URL and that `omnivec serve` is running",
            code="connection_failed",
            status=0,
        )
    return OmnivecError(
        f"the request to {base_url} got no complete answer ({exc.__class__.__name__}: {exc}); the server may have "
        "done it anyway. If it timed out, raise the client's timeout_s or send smaller batches",
        code="no_answer",
        status=0,
    )
