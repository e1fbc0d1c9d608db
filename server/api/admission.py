"""Admission at the door: a bounded permit per model request, taken before its body is read.

Overload used to be noticed at a tower queue, after the upload had been read and decoded or the
text tokenised; a burst of large uploads could fill memory first. Like text-embeddings-inference's
`max_concurrent_requests`, each model route (embed, search, add items, classify) now takes one of
`limits.max_concurrent_requests` permits before it reads anything, and a request that finds none
free is answered 429 + Retry-After at once. The permit is held until the response is done.
"""

from __future__ import annotations

import threading
from typing import AsyncIterator

from fastapi import Request

from ..errors import ErrorCode, OmnivecError

RETRY_AFTER_S = 1


class Admission:
    """A non-blocking counting permit: `try_acquire` never waits (a waiting request still holds a connection)."""

    def __init__(self, permits: int) -> None:
        self.permits = permits
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def try_acquire(self) -> bool:
        with self._lock:
            if self._in_use >= self.permits:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1


async def admitted(request: Request) -> AsyncIterator[None]:
    """FastAPI dependency of every model route: hold a permit for the request, or refuse it with 429."""
    admission: Admission = request.app.state.admission
    if not admission.try_acquire():
        raise OmnivecError(
            ErrorCode.OVERLOADED,
            f"the server is already working on {admission.permits} model requests (limits.max_concurrent_requests); "
            f"retry after {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    try:
        yield
    finally:
        admission.release()
