"""A stored point's payload: the user's JSON object plus the one key the API owns, `modality`.

Users filter on their own fields and on `modality` with the same Qdrant filter JSON; `modality` and
the store's reserved `_omnivec*` keys cannot be set by users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ErrorCode, OmnivecError
from ..index.store import RESERVED_PREFIX

__all__ = ["MODALITY_KEY", "user_payload", "split_payload"]

MODALITY_KEY = "modality"


def user_payload(payload: Any, label: str) -> dict:
    """Check a client payload: a JSON object whose keys the API does not reserve."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{label}.payload must be a JSON object, got {type(payload).__name__}")
    for key in payload:
        if key == MODALITY_KEY or str(key).startswith(RESERVED_PREFIX):
            raise OmnivecError(
                ErrorCode.INVALID_REQUEST,
                f"{label}.payload key {key!r} is reserved (the API stores the item's modality under {MODALITY_KEY!r}); rename it",
            )
    return dict(payload)


def split_payload(stored: dict | None) -> tuple[str | None, dict]:
    """Stored payload -> (modality, the user's payload)."""
    payload = dict(stored or {})
    return payload.pop(MODALITY_KEY, None), payload
