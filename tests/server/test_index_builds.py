"""Background ANN index builds: automatic after bulk inserts, on demand, and searches keep working."""

from __future__ import annotations

import time

import httpx
import numpy as np

from omnivec.server_process import ServerProcess


def _wait_built(url: str, name: str, builds: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/collections/{name}", timeout=10).json()
        if info["indexing"]["builds"] >= builds and not info["indexing"]["building"]:
            return info
        time.sleep(0.2)
    raise AssertionError(f"no build finished: {info}")


def test_bulk_insert_triggers_a_background_build_and_search_keeps_working(tiny_bundle, tmp_path):
    env = {"OMNIVEC_DATA_DIR": str(tmp_path), "OMNIVEC_INDEX__OPTIMIZE_AFTER_POINTS": "40"}
    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "server.log") as srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "docs"}, timeout=10).status_code == 201
        texts = [f"document number {i} about topic {i % 7}" for i in range(60)]
        r = httpx.post(f"{srv.url}/v1/collections/docs/items", json={"items": [{"text": t} for t in texts[:30]]}, timeout=60)
        assert r.status_code == 200 and httpx.get(f"{srv.url}/v1/collections/docs", timeout=10).json()["indexing"]["builds"] == 0
        httpx.post(f"{srv.url}/v1/collections/docs/items", json={"items": [{"text": t} for t in texts[30:]]}, timeout=60)
        hits_during = httpx.post(f"{srv.url}/v1/collections/docs/search", json={"query": {"text": texts[5]}, "top_k": 3}, timeout=30).json()
        info = _wait_built(srv.url, "docs", 1)
        assert info["indexing"]["points_since_build"] == 0 and info["indexing"]["last_error"] is None
        hits_after = httpx.post(f"{srv.url}/v1/collections/docs/search", json={"query": {"text": texts[5]}, "top_k": 3}, timeout=30).json()
        assert hits_during["results"][0]["id"] == hits_after["results"][0]["id"]
        assert hits_after["results"][0]["payload"] == {} and np.isclose(hits_after["results"][0]["score"], 1.0, atol=1e-4)

        r = httpx.post(f"{srv.url}/v1/collections/docs/optimize", timeout=10)
        assert r.status_code == 202 and r.json()["name"] == "docs"
        _wait_built(srv.url, "docs", 2)
        missing = httpx.post(f"{srv.url}/v1/collections/nope/optimize", timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
