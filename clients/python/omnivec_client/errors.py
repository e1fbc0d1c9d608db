"""The one exception the client raises, carrying the server's stable error code."""

from __future__ import annotations


class OmnivecError(Exception):
    """The server refused or failed a request, or could not be reached.

    `code` is the server's machine-readable code (`invalid_image`, `collection_not_found`,
    `overloaded`, ...; `connection_failed` when no answer came), `status` the HTTP status (0 without
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


def connection_failed(base_url: str, exc: Exception) -> OmnivecError:
    """Why no answer came, with what to check."""
    return OmnivecError(
        f"no omnivec server answered at {base_url} ({exc.__class__.__name__}: {exc}); "
        "check the URL and that `omnivec serve` is running",
        code="connection_failed",
        status=0,
    )
