"""Fixtures of the index tests: every engine the contract suite runs on."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from omnivec.server.index import QdrantIndexStore
from tests.server.index.support import _edge


@pytest.fixture(params=["edge", "qdrant"])
def store(request, tmp_path):
    s = _edge(tmp_path / "idx") if request.param == "edge" else QdrantIndexStore(QdrantClient(":memory:"))
    yield s
    s.close()



@pytest.fixture(params=["edge", "qdrant"])
def ann_store(request, tmp_path):
    """Like `store`, but Edge builds a real HNSW index even for a small test collection."""
    if request.param == "edge":
        s = _edge(tmp_path / "idx", indexing_threshold_kb=50, full_scan_threshold_kb=10, hnsw_ef=64)
    else:
        s = QdrantIndexStore(QdrantClient(":memory:"))
    yield s
    s.close()

