"""`omnivec serve` restarted on the same data dir: collections and label sets survive; a server whose
model has another embedding space refuses to write or embed-query the old collections (409)."""

from __future__ import annotations

import base64
import json
import shutil

import httpx

from omnivec.server_process import ServerProcess
from tests.media import encode, scene

IMAGE = encode(scene(50, 40, seed=7), "PNG")


def test_restart_persistence_and_space_refusal(tiny_bundle, tmp_path):
    env = {"OMNIVEC_DATA_DIR": str(tmp_path / "data"), "OMNIVEC_INDEX__SEARCH_THREADS": "1"}
    items = [{"text": "a lighthouse at night", "payload": {"n": 1}}, {"text": "fresh bread"}, {"image": base64.b64encode(IMAGE).decode(), "id": "pic"}]

    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "first.log") as srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "kept"}, timeout=10).status_code == 201
        body = httpx.post(f"{srv.url}/v1/collections/kept/items", json={"items": items}, timeout=60).json()
        assert body["indexed"] == 3, body
        assert httpx.put(f"{srv.url}/v1/labelsets/kept-labels", json={"labels": ["bread", "lighthouse"]}, timeout=10).status_code == 200
        space = httpx.get(f"{srv.url}/v1/collections/kept", timeout=10).json()["space_id"]

    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "second.log") as srv:
        info = httpx.get(f"{srv.url}/v1/collections/kept", timeout=10).json()
        assert info["count"] == 3 and info["matches_model"] is True
        hits = httpx.post(f"{srv.url}/v1/collections/kept/search", json={"query": {"text": "fresh bread"}, "top_k": 1}, timeout=30).json()["results"]
        assert hits[0]["id"] == body["ids"][1] and hits[0]["score"] > 0.999
        assert httpx.get(f"{srv.url}/v1/collections/kept/items/pic", timeout=10).json()["modality"] == "image"
        assert httpx.get(f"{srv.url}/v1/labelsets/kept-labels", timeout=10).json()["labels"] == ["bread", "lighthouse"]

    other = tmp_path / "other-bundle"
    shutil.copytree(tiny_bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["space_id"] = "omnivec-tiny@0000000000000000"
    (other / "manifest.json").write_text(json.dumps(manifest))

    with ServerProcess(other, env=env, log=tmp_path / "third.log") as srv:
        assert httpx.get(f"{srv.url}/v1/collections/kept", timeout=10).json()["matches_model"] is False
        for r in (
            httpx.post(f"{srv.url}/v1/collections/kept/items", json={"items": [{"text": "more"}]}, timeout=30),
            httpx.post(f"{srv.url}/v1/collections/kept/search", json={"query": {"text": "bread"}}, timeout=30),
        ):
            assert r.status_code == 409, r.text
            error = r.json()["error"]
            assert error["code"] == "space_mismatch"
            assert space in error["message"] and "omnivec-tiny@0000000000000000" in error["message"] and "new collection" in error["message"]
        # queries that involve no model still work on the old collection
        vector = httpx.get(f"{srv.url}/v1/collections/kept/items/pic", params={"with_vector": "true"}, timeout=10).json()["vector"]
        r = httpx.post(f"{srv.url}/v1/collections/kept/search", json={"query": {"vector": vector}, "top_k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["id"] == "pic"
        assert httpx.post(f"{srv.url}/v1/collections/kept/search", json={"query": {"id": "pic"}}, timeout=30).status_code == 200
        created = httpx.post(f"{srv.url}/v1/collections", json={"name": "fresh"}, timeout=10).json()
        assert created["space_id"] == "omnivec-tiny@0000000000000000" and created["matches_model"] is True
