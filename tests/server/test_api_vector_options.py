"""Collection vector options (`dimensions`, `quantization`, `on_disk`, `hnsw`) through real HTTP on both engines.

One in-process uvicorn server per engine around `create_app` on the tiny bundle (64-d, no nested_dims):
Edge opened by the app on a tmp data dir, qdrant-client's `:memory:` store injected.
"""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest

from tests.http_checks import assert_error
from tests.inprocess import engine_server, one_thread_settings

DIM = 64
TEXTS = ["a red disk on a gradient", "a blue square", "a quiet river at dawn", "mountain road", "city lights at night", "a small boat"]


@pytest.fixture(scope="module", params=["edge", "qdrant"])
def api(request, tiny_bundle, tmp_path_factory):
    settings = one_thread_settings(tmp_path_factory.mktemp(f"vec-{request.param}"), tiny_bundle)
    with engine_server(request.param, settings) as srv:
        yield srv


@pytest.fixture
def client(api) -> httpx.Client:
    return api.client


def _name() -> str:
    return f"v-{uuid.uuid4().hex[:8]}"


def _embed(client, texts, **extra) -> np.ndarray:
    r = client.post("/v1/embed", json={"texts": texts, **extra})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def _search(client, name, **body) -> list[dict]:
    r = client.post(f"/v1/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_default_collection_reports_its_vectors_and_no_warning(client):
    name = _name()
    r = client.post("/v1/collections", json={"name": name})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["vectors"] == {"dimensions": DIM, "model_dim": DIM, "quantization": "none", "oversampling": None, "on_disk": False, "hnsw": {"m": None, "ef_construct": None, "ef": None}}
    assert body["warnings"] == [] and body["dim"] == DIM
    client.delete(f"/v1/collections/{name}")


def test_dimensions_store_and_search_a_renormalised_prefix(client):
    name = _name()
    r = client.post("/v1/collections", json={"name": name, "dimensions": 32})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["dim"] == 32 and created["vectors"]["dimensions"] == 32 and created["vectors"]["model_dim"] == DIM
    assert len(created["warnings"]) == 1 and "nested_dims" in created["warnings"][0] and "--nested-dims" in created["warnings"][0]
    assert client.get(f"/v1/collections/{name}").json()["warnings"] == created["warnings"]  # kept with the collection
    try:
        r = client.post(f"/v1/collections/{name}/items", json={"items": [{"text": t, "id": f"t{i}"} for i, t in enumerate(TEXTS)]})
        assert r.status_code == 200 and r.json()["indexed"] == len(TEXTS), r.text
        full = _embed(client, TEXTS)
        short = _embed(client, TEXTS, dimensions=32)
        expected = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
        np.testing.assert_allclose(short, expected, atol=1e-6)
        stored = client.get(f"/v1/collections/{name}/items/t2", params={"with_vector": "true"}).json()["vector"]
        np.testing.assert_allclose(stored, short[2], atol=1e-6)
        hits = _search(client, name, query={"text": TEXTS[4]}, top_k=len(TEXTS))
        assert hits[0]["id"] == "t4" and abs(hits[0]["score"] - 1) < 1e-5
        scores = {h["id"]: h["score"] for h in hits}
        for i in range(len(TEXTS)):  # the index's cosine is the cosine of the 32-d prefixes
            assert abs(scores[f"t{i}"] - float(short[i] @ short[4])) < 1e-5
        for vector in (full[1].tolist(), short[1].tolist()):  # a model-sized vector is cut; a prefix-sized one is used as is
            assert _search(client, name, query={"vector": vector}, top_k=1)[0]["id"] == "t1"
        assert_error(client.post(f"/v1/collections/{name}/search", json={"query": {"vector": [0.1] * 40}}), 422, "dimension_mismatch")
    finally:
        client.delete(f"/v1/collections/{name}")


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_quantised_collection_on_each_engine(client, api, quantization):
    name = _name()
    body = {"name": name, "quantization": quantization, "on_disk": True, "hnsw": {"m": 8, "ef_construct": 64, "ef": 128}}
    r = client.post("/v1/collections", json=body)
    if api.engine == "qdrant":  # qdrant-client local mode: exact in-memory search only
        assert_error(r, 422, "invalid_request", "local mode", "quantization")
        assert client.get(f"/v1/collections/{name}").status_code == 404
        r = client.post("/v1/collections", json={"name": name, "quantization": "none", "dimensions": 48})  # what it can do, it does
        assert r.status_code == 201, r.text
        client.delete(f"/v1/collections/{name}")
        return
    assert r.status_code == 201, r.text
    vectors = r.json()["vectors"]
    assert vectors["quantization"] == quantization and vectors["on_disk"] is True and vectors["hnsw"] == {"m": 8, "ef_construct": 64, "ef": 128}
    assert vectors["oversampling"] == {"int8": 2.0, "binary": 3.0}[quantization]
    try:
        client.post(f"/v1/collections/{name}/items", json={"items": [{"text": t, "id": f"t{i}"} for i, t in enumerate(TEXTS)]})
        assert client.post(f"/v1/collections/{name}/optimize").status_code == 202
        full = _embed(client, TEXTS)
        hits = _search(client, name, query={"text": TEXTS[3]}, top_k=3)
        assert hits[0]["id"] == "t3"
        for h in hits:  # rescored with the float vectors: exact cosines
            assert abs(h["score"] - float(full[int(h["id"][1:])] @ full[3])) < 1e-5
        assert client.get(f"/v1/collections/{name}").json()["vectors"] == vectors
    finally:
        client.delete(f"/v1/collections/{name}")


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"dimensions": DIM + 1}, ["dimensions must be an integer between 1 and", str(DIM)]),
        ({"dimensions": 0}, ["dimensions"]),
        ({"quantization": "int4"}, ["quantization"]),
        ({"oversampling": 2.0}, ["only applies to a quantised collection"]),
        ({"quantization": "int8", "oversampling": 100}, ["oversampling"]),
        ({"hnsw": {"m": 2}}, ["hnsw", "m"]),
        ({"hnsw": {"ef": 2}}, ["ef"]),
        ({"hnsw": {"beam": 64}}, ["beam"]),
        ({"on_disk": "yes"}, ["on_disk"]),
    ],
)
def test_bad_vector_options_are_422_naming_the_field(client, extra, words):
    name = _name()
    r = client.post("/v1/collections", json={"name": name, **extra})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message
    assert client.get(f"/v1/collections/{name}").status_code == 404


def test_sdk_sends_vector_options_and_reads_them_back(api):
    from omnivec_client import Client

    name = _name()
    with Client(api.url) as sdk:
        coll = sdk.create_collection(name, vectors={"dimensions": 16, "quantization": "none"})
        assert (coll.dim, coll.vectors["dimensions"], coll.vectors["model_dim"]) == (16, 16, DIM) and len(coll.warnings) == 1
        assert sdk.get_collection(name).vectors == coll.vectors
        sdk.delete_collection(name)
