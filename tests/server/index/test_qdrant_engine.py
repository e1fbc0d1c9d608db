"""Qdrant only: foreign collections, settings, the metadata cache, engine failures."""

from __future__ import annotations

import time

import pytest
from qdrant_client import QdrantClient

from omnivec.server.index import (
    CollectionNotFound,
    Point,
    QdrantIndexStore,
)
from omnivec.server.index.store import ID_KEY, point_uuid
from tests.server.index.support import DIM, clustered, fill, make


# ------------------------------------------------------------------------------------------------
# Qdrant only
# ------------------------------------------------------------------------------------------------


def test_qdrant_ignores_foreign_collections():
    from qdrant_client import models as m

    client = QdrantClient(":memory:")
    client.create_collection("foreign", vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE))
    s = QdrantIndexStore(client)
    make(s, "ours", dim=4)
    assert [c.name for c in s.list_collections()] == ["ours"]
    with pytest.raises(CollectionNotFound):
        s.get_collection("foreign")
    with pytest.raises(CollectionNotFound):
        s.delete_collection("foreign")
    assert client.collection_exists("foreign")
    meta = client.get_collection("ours").config.metadata["omnivec"]
    assert meta["dim"] == 4 and meta["space_id"] == "space-a"
    s.upsert("ours", [Point("a", [1, 0, 0, 0], {"x": 1})])
    rec = client.retrieve("ours", [point_uuid("a")], with_payload=True)[0]
    assert rec.payload == {"x": 1, ID_KEY: "a"}
    s.close()


def test_qdrant_from_settings_memory():
    s = QdrantIndexStore.from_settings(":memory:", api_key=None, prefer_grpc=False, timeout=5)
    make(s, "c", dim=2)
    assert s.get_collection("c").dim == 2
    s.close()




# --- metadata cache: no point count on the request path, changes behind the server's back still seen ----


class CallLog:
    """Records which qdrant-client methods the store calls (wraps the real client)."""

    def __init__(self, store: QdrantIndexStore) -> None:
        self.calls: list[str] = []
        inner = store._call

        def call(method, *args, **kwargs):
            self.calls.append(method)
            return inner(method, *args, **kwargs)

        store._call = call


def test_search_and_add_ask_qdrant_for_nothing_but_the_operation():
    """Before: collection_exists + get_collection + count before every query. Now the metadata is cached."""
    store = QdrantIndexStore(QdrantClient(":memory:"))
    make(store)
    fill(store, "c", clustered(20))
    log = CallLog(store)
    for i in range(5):
        store.search("c", clustered(1, seed=i)[0], top_k=3)
    store.upsert("c", [Point("new", clustered(1, seed=9)[0], {})])
    assert log.calls == ["query_points"] * 5 + ["upsert"]
    store.close()


def test_a_collection_deleted_or_recreated_behind_the_servers_back_is_noticed():
    """Two servers on one Qdrant: `ours` caches the metadata, `other` drops and recreates the collection."""
    client = QdrantClient(":memory:")
    ours, other = QdrantIndexStore(client, close_client=False), QdrantIndexStore(client, close_client=False)
    make(ours, space_id="space-a")
    fill(ours, "c", clustered(10))
    assert ours.describe("c").space_id == "space-a"
    other.delete_collection("c")
    with pytest.raises(CollectionNotFound):  # the failing engine call says so, and drops the cache entry
        ours.search("c", clustered(1)[0])
    make(other, dim=DIM * 2, space_id="space-b")  # recreated with another model
    assert ours.describe("c").space_id == "space-b" and ours.describe("c").dim == DIM * 2
    other.delete_collection("c")
    make(other, space_id="space-c")  # same dim, other space: nothing fails, the entry expires
    ours.meta_ttl_s = 0.05
    time.sleep(0.1)
    assert ours.describe("c").space_id == "space-c"
    ours.close()
    client.close()


# --- engine failures: each its own code -------------------------------------------------------


def test_an_unreachable_qdrant_is_503_index_unavailable_with_retry_after():
    from omnivec.server.index.errors import IndexUnavailable

    store = QdrantIndexStore(QdrantClient(url="http://127.0.0.1:1", timeout=1, check_compatibility=False))
    with pytest.raises(IndexUnavailable) as info:
        store.search("c", clustered(1)[0])
    assert (info.value.status, info.value.code.value, info.value.headers["Retry-After"]) == (503, "index_unavailable", "1")
    assert "reachable" in info.value.message


def test_a_qdrant_that_does_not_answer_is_504_index_timeout():
    """A TCP server that accepts and never answers: the client's timeout becomes index_timeout."""
    import socket

    from omnivec.server.index.errors import IndexTimeout

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        store = QdrantIndexStore(QdrantClient(url=f"http://127.0.0.1:{port}", timeout=1, check_compatibility=False))
        with pytest.raises(IndexTimeout) as info:
            store.describe("c")
        assert (info.value.status, info.value.code.value) == (504, "index_timeout")
    finally:
        listener.close()
