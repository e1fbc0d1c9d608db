"""POST /v1/classify and /v1/labelsets through real HTTP against `omnivec serve` (random tiny model).

The tiny model is random, so label semantics mean nothing; "clear cases" use a text input that
equals one label exactly (cosine 1 with the label's own embedding under the "{}" template).
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.media import encode, scene
from tests.http_checks import assert_error, assert_still_serving

LABELS = ["a red disk", "a blue square", "a quiet river", "mountain road"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(autouse=True)
def _server_stays_healthy(server):
    yield
    assert_still_serving(server.url)


def _classify(server, **body) -> dict:
    r = httpx.post(f"{server.url}/v1/classify", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_softmax_scores_sum_to_one_and_exact_text_wins(server):
    image = _b64(encode(scene(60, 50, seed=3), "PNG"))
    body = _classify(server, inputs=[{"text": "a quiet river"}, {"image": image}, {"text": "mountain road"}], labels=LABELS, top_k=10)
    assert body["scoring"] == "softmax" and body["multi_label"] is False and body["model"] == "omnivec-tiny"
    rows = body["results"]
    assert len(rows) == 3 and all(len(r["labels"]) == 4 for r in rows)
    for row in rows:
        assert abs(sum(s["score"] for s in row["labels"]) - 1) < 1e-6
        assert [s["score"] for s in row["labels"]] == sorted((s["score"] for s in row["labels"]), reverse=True)
    assert rows[0]["labels"][0]["label"] == "a quiet river" and rows[0]["labels"][0]["cosine"] > 0.9999
    assert rows[2]["labels"][0]["label"] == "mountain road"
    assert len(_classify(server, inputs=[{"text": "x"}], labels=LABELS, top_k=2)["results"][0]["labels"]) == 2


def test_templates_and_image_default_ensemble(server):
    """With the template "a photo of a {}.", the text "a photo of a cat." is exactly the 'cat' label."""
    body = _classify(server, inputs=[{"text": "a photo of a cat."}], labels=["dog", "cat", "car"], templates=["a photo of a {}."])
    assert body["results"][0]["labels"][0]["label"] == "cat" and body["results"][0]["labels"][0]["cosine"] > 0.9999
    # images use the default three-template ensemble: the label embedding is their renormalised mean
    embed = httpx.post(
        f"{server.url}/v1/embed", json={"texts": [t.format("cat") for t in ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")]}, timeout=30
    ).json()
    mean = np.mean([d["embedding"] for d in embed["data"]], axis=0)
    mean /= np.linalg.norm(mean)
    image = _b64(encode(scene(40, 40, seed=4), "PNG"))
    image_vec = np.array(httpx.post(f"{server.url}/v1/embed", json={"images": [image]}, timeout=30).json()["data"][0]["embedding"])
    row = _classify(server, inputs=[{"image": image}], labels=["cat", "dog"])["results"][0]["labels"]
    assert abs({s["label"]: s["cosine"] for s in row}["cat"] - float(image_vec @ mean)) < 1e-5


def test_multi_label_on_a_softmax_model(server):
    body = _classify(server, inputs=[{"text": "a blue square"}], labels=LABELS, multi_label=True)
    assert body["scoring"] == "softmax-pairwise" and body["multi_label"] is True
    scores = {s["label"]: s["score"] for s in body["results"][0]["labels"]}
    assert scores["a blue square"] > 0.5 and all(0 < v < 1 for v in scores.values())


def test_multipart_classify(server):
    png = encode(scene(50, 40, seed=5), "PNG")
    r = httpx.post(
        f"{server.url}/v1/classify",
        files=[("images", ("a.png", png, "image/png"))],
        data={"params": '{"labels": ["cat", "dog"], "inputs": [{"text": "dog"}]}'},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert len(rows) == 2 and rows[0]["labels"][0]["label"] == "dog"


def test_labelsets_crud_and_use(server):
    url = f"{server.url}/v1/labelsets/scenes"
    r = httpx.put(url, json={"labels": LABELS, "templates": ["{}"], "description": "test set"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == LABELS and r.json()["templates"] == ["{}"]
    assert httpx.get(url, timeout=10).json()["description"] == "test set"
    assert "scenes" in [s["name"] for s in httpx.get(f"{server.url}/v1/labelsets", timeout=10).json()["data"]]
    body = _classify(server, inputs=[{"text": "mountain road"}], labelset="scenes")
    assert body["results"][0]["labels"][0]["label"] == "mountain road"
    assert httpx.put(url, json={"labels": ["x", "y"]}, timeout=10).json()["labels"] == ["x", "y"], "PUT replaces"
    assert httpx.delete(url, timeout=10).json() == {"name": "scenes", "deleted": True}
    assert_error(httpx.get(url, timeout=10), 404, "labelset_not_found", "scenes")
    assert_error(httpx.delete(url, timeout=10), 404, "labelset_not_found")


def test_classify_errors(server):
    post = lambda **body: httpx.post(f"{server.url}/v1/classify", json=body, timeout=30)  # noqa: E731
    assert_error(post(inputs=[{"text": "a"}], labels=[]), 422, "labels_empty", "labels")
    assert_error(post(inputs=[{"text": "a"}]), 422, "labels_empty")
    assert_error(post(inputs=[{"text": "a"}], labels=["x", " "]), 422, "labels_empty", "labels[1]")
    assert_error(post(inputs=[{"text": "a"}], labels=["x", "x"]), 422, "invalid_request", "twice")
    assert_error(post(inputs=[{"text": "a"}], labelset="nope"), 404, "labelset_not_found", "nope")
    assert_error(post(inputs=[{"text": "a"}], labels=["x"], labelset="y"), 422, "invalid_request", "not both")
    assert_error(post(inputs=[{"text": "a"}], labels=["x"], templates=["no slot"]), 422, "invalid_request", "{}")
    assert_error(post(inputs=[], labels=["x"]), 400, "empty_request")
    assert_error(post(inputs=[{"image": "%%%"}], labels=["x"]), 422, "invalid_base64", "inputs[0].image")
    assert_error(httpx.put(f"{server.url}/v1/labelsets/empty", json={"labels": []}, timeout=10), 422, "labels_empty")
    assert_error(httpx.put(f"{server.url}/v1/labelsets/bad%20name", json={"labels": ["a"]}, timeout=10), 422, "invalid_request", "label set name")


def test_urls_to_loopback_are_blocked_without_an_allowlist(server):
    """The session server has no fetch allowlist: its own address, metadata and private ranges are refused."""
    for url, kind in [(f"{server.url}/healthz", "loopback"), ("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://10.1.2.3/a.png", "private")]:
        r = httpx.post(f"{server.url}/v1/classify", json={"inputs": [{"url": url}], "labels": ["a", "b"]}, timeout=30)
        assert_error(r, 422, "url_blocked", url, kind)
