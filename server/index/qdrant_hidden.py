"""`HiddenCollection`: one of omnivec's own Qdrant collections (label-set documents, kept media).

Its name starts with `_`, which no user collection can, and it carries no omnivec metadata, so the
store never lists or serves it. It is created on first use (tolerating another replica creating it
at the same moment) and again if it vanishes (Qdrant wiped or restored from an older snapshot);
every call goes through the engine's error translation, like any other engine call.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from qdrant_client import models as m

if TYPE_CHECKING:  # pragma: no cover
    from .qdrant import QdrantIndexStore

__all__ = ["HiddenCollection"]


class HiddenCollection:
    """Calls on one hidden collection with a constant 1-d vector per point (Qdrant needs one)."""

    def __init__(self, index: "QdrantIndexStore", name: str, *, on_disk_payload: bool | None = None, keyword_fields: Sequence[str] = ()) -> None:
        self._index = index
        self.name = name
        self._on_disk_payload = on_disk_payload
        self._keyword_fields = tuple(keyword_fields)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            call = self._index._call
            if not call("collection_exists", self.name):
                try:
                    copies = {k: v for k, v in self._index._placement.items() if k == "replication_factor"}  # survives a node like the user's data
                    call(
                        "create_collection", self.name, vectors_config=m.VectorParams(size=1, distance=m.Distance.DOT), on_disk_payload=self._on_disk_payload, **copies
                    )
                    with warnings.catch_warnings():  # local mode (tests) says indexes have no effect there; they do on a server
                        warnings.simplefilter("ignore", UserWarning)
                        for field in self._keyword_fields:
                            call("create_payload_index", self.name, field, m.PayloadSchemaType.KEYWORD)
                except Exception:  # noqa: BLE001 - another replica created it first
                    if not call("collection_exists", self.name):
                        raise
            self._ready = True

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call on the collection, recreating it once if it vanished; failures are translated."""
        with self._index._engine():
            self._ensure()
            try:
                return self._index._call(method, self.name, *args, **kwargs)
            except Exception:
                if self._index._exists(self.name) is not False:
                    raise
                self._ready = False
                self._ensure()
                return self._index._call(method, self.name, *args, **kwargs)
