"""Collection names that point at another physical collection, so a collection can be rebuilt aside and swapped in.

A re-embed builds `photos.r1` next to `photos`, then points the name `photos` at it in one step:
every call that starts after the swap reads and writes the new collection, every call already
running finishes on the one it started on (both stay searchable: the old one is kept, under
`photos.r0` when it was the original, until it is deleted). The map is one small document stored
where the index lives (`IndexStore.documents`), so a restart, or every server sharing the index,
sees the same names; an engine other processes can change re-reads it after `ttl_s`.

A `Physical` name is never looked up in the map: a request that resolved its collection once keeps
using that one, even if the name moves meanwhile (no request ever mixes two spaces).
"""

from __future__ import annotations

import threading
import time

from .store import DocumentStore

__all__ = ["AliasMap", "Physical"]

DOCUMENT = "aliases"


class Physical(str):
    """A physical collection name: used as is, never resolved through an alias."""


class AliasMap:
    """name -> physical collection, persisted as one document; thread-safe."""

    def __init__(self, documents: DocumentStore, ttl_s: float | None = None) -> None:
        self.documents = documents
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._map: dict[str, str] | None = None
        self._read_at = 0.0

    def current(self) -> dict[str, str]:
        with self._lock:
            stale = self.ttl_s is not None and time.monotonic() - self._read_at >= self.ttl_s
            if self._map is None or stale:
                self._map = dict((self.documents.get(DOCUMENT) or {}).get("aliases", {}))
                self._read_at = time.monotonic()
            return self._map

    def resolve(self, name: str) -> Physical:
        if isinstance(name, Physical):
            return name
        return Physical(self.current().get(name, name))

    def update(self, set_: dict[str, str], remove: set[str] = frozenset(), remove_targets: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Set and remove names in one write (the swap is this one document replacement)."""
        with self._lock:
            fresh = dict((self.documents.get(DOCUMENT) or {}).get("aliases", {}))
            for name in remove:
                fresh.pop(name, None)
            fresh = {k: v for k, v in fresh.items() if v not in remove_targets}
            fresh.update(set_)
            self.documents.put(DOCUMENT, {"name": DOCUMENT, "aliases": fresh})
            self._map, self._read_at = fresh, time.monotonic()
