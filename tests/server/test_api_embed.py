"""/v1/embed and friends through real HTTP against `omnivec serve` on 127.0.0.1."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest

from tests.media import encode, open_as_user_expects, sample_files, scene
from tests.http_checks import assert_error, assert_still_serving

FILES = sample_files()
TEXTS = ["a photo of a dog", "A RED CIRCLE &amp; a blue square", "日本語 and emoji 🐶", "word " * 120]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _torch_texts(loaded, texts):
    import torch

    with torch.no_grad():
        return loaded.model.encode_text(loaded.tokenizer(texts)).numpy()


def _torch_images(loaded, datas):
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    transform = image_transform_v2(PreprocessCfg(**loaded.preprocess_cfg), is_train=False)
    batch = torch.stack([transform(open_as_user_expects(d)) for d in datas])
    with torch.no_grad():
        return loaded.model.encode_image(batch).numpy()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def _vectors(body: dict) -> np.ndarray:
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float64)


@pytest.fixture(autouse=True)
def _server_stays_healthy(server):
    yield
    assert_still_serving(server.url)


def test_texts_match_open_clip(server, tiny_loaded):
    r = httpx.post(f"{server.url}/v1/embed", json={"texts": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "omnivec-tiny" and body["dim"] == 64 and body["space_id"].startswith("omnivec-tiny@")
    vectors = _vectors(body)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cos(vectors, _torch_texts(tiny_loaded, TEXTS)).min() >= 0.99999
    assert [item["truncated"] for item in body["data"]] == [False, False, False, True]
    assert body["warnings"] and "text 3 was truncated" in body["warnings"][0]
    assert body["usage"]["texts"] == 4 and body["usage"]["text_tokens"] > 77


def test_images_match_open_clip_json_and_multipart(server, tiny_loaded):
    names = sorted(FILES)
    reference = _torch_images(tiny_loaded, [FILES[n] for n in names])
    r = httpx.post(f"{server.url}/v1/embed", json={"images": [_b64(FILES[n]) for n in names]}, timeout=60)
    assert r.status_code == 200, r.text
    cos = _cos(_vectors(r.json()), reference)
    assert cos.min() >= 0.9999, dict(zip(names, cos.round(6)))
    files = [("images", (n, FILES[n], "application/octet-stream" if n.endswith("bmp") else f"image/{n.rsplit('.', 1)[1]}")) for n in names]
    r2 = httpx.post(f"{server.url}/v1/embed", files=files, timeout=60)
    assert r2.status_code == 200, r2.text
    np.testing.assert_allclose(_vectors(r2.json()), _vectors(r.json()), atol=1e-6)


def test_data_uri_base64_encoding_and_mixed_order(server):
    png = encode(scene(50, 40), "PNG")
    uri = "data:image/png;base64," + _b64(png)
    r = httpx.post(
        f"{server.url}/v1/embed",
        json={"inputs": [{"image": uri}, {"text": "first text"}, {"image": _b64(png)}], "encoding": "base64"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["modality"] for d in data] == ["image", "text", "image"]
    assert [d["index"] for d in data] == [0, 1, 2] and [d["input_index"] for d in data] == [0, 1, 2]
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data]
    assert all(v.shape == (64,) for v in decoded)
    np.testing.assert_allclose(decoded[0], decoded[2], atol=1e-6)
    floats = httpx.post(f"{server.url}/v1/embed", json={"texts": ["first text"]}, timeout=30).json()
    np.testing.assert_allclose(decoded[1], floats["data"][0]["embedding"], atol=1e-6)


def test_default_order_is_texts_then_images(server):
    png = _b64(encode(scene(30, 30), "PNG"))
    r = httpx.post(f"{server.url}/v1/embed", json={"images": [png], "texts": ["a", "b"]}, timeout=30)
    data = r.json()["data"]
    assert [(d["modality"], d["input_index"]) for d in data] == [("text", 0), ("text", 1), ("image", 0)]


def test_batch_results_equal_single_requests(server):
    batch = httpx.post(f"{server.url}/v1/embed", json={"texts": TEXTS[:3]}, timeout=30).json()
    for i, text in enumerate(TEXTS[:3]):
        single = httpx.post(f"{server.url}/v1/embed", json={"texts": [text]}, timeout=30).json()
        np.testing.assert_allclose(single["data"][0]["embedding"], batch["data"][i]["embedding"], atol=1e-5)


def test_models_endpoint(server):
    r = httpx.get(f"{server.url}/v1/models", timeout=10)
    assert r.status_code == 200
    (info,) = r.json()["data"]
    assert info["modalities"] == ["image", "text"] and info["dim"] == 64
    assert info["scoring"]["kind"] == "softmax"
    assert {t["modality"]: t["precision"] for t in info["towers"]} == {"image": "fp32", "text": "fp32"}
    assert info["parity"]["text"]["fp32"]["cos_min"] >= 0.99999


def test_docs_and_openapi(server):
    assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert "/v1/embed" in spec["paths"] and "EmbedRequest" in spec["components"]["schemas"]
    assert httpx.get(f"{server.url}/readyz", timeout=10).json()["status"] == "ready"


# --- every bad input: a specific 4xx whose message says what to do -------------------------


def test_invalid_image_bytes(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"images": [_b64(b"not an image at all")]}, timeout=30)
    assert_error(r, 422, "invalid_image", "images[0]", "JPEG")


def test_truncated_image(server):
    r = httpx.post(f"{server.url}/v1/embed", files=[("images", ("cut.jpg", FILES["photo.jpg"][:400], "image/jpeg"))], timeout=30)
    assert_error(r, 422, "invalid_image", "cut.jpg")


def test_invalid_base64(server):
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"images": ["%%%not base64%%%"]}, timeout=30), 422, "invalid_base64", "images[0]")


def test_unsupported_image_format(server):
    tiff = _b64(encode(scene(30, 30), "TIFF"))
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"images": [tiff]}, timeout=30), 415, "unsupported_media_type", "TIFF")


def test_wrong_upload_content_type(server):
    r = httpx.post(f"{server.url}/v1/embed", files=[("images", ("a.txt", b"hello", "text/plain"))], timeout=30)
    assert_error(r, 415, "unsupported_media_type", "text/plain")


def test_wrong_data_uri_type(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"images": ["data:audio/wav;base64," + _b64(b"RIFF")]}, timeout=30)
    assert_error(r, 415, "unsupported_media_type", "audio/wav")


def test_wrong_request_content_type(server):
    r = httpx.post(f"{server.url}/v1/embed", content=b"texts=a", headers={"content-type": "text/plain"}, timeout=30)
    assert_error(r, 415, "unsupported_media_type", "application/json")


def test_payload_too_large(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"texts": ["x" * (5 * 1024 * 1024)]}, timeout=30)
    assert_error(r, 413, "payload_too_large", "OMNIVEC_LIMITS__MAX_REQUEST_BYTES")


def test_payload_too_large_chunked_without_length(server):
    def body():
        yield b'{"texts": ["'
        for _ in range(5 * 1024):
            yield b"y" * 1024
        yield b'"]}'

    r = httpx.post(f"{server.url}/v1/embed", content=body(), headers={"content-type": "application/json"}, timeout=30)
    assert_error(r, 413, "payload_too_large")


def test_single_image_too_large(server):
    big = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    from PIL import Image

    data = encode(Image.fromarray(big), "PNG")
    assert len(data) > 1024 * 1024
    r = httpx.post(f"{server.url}/v1/embed", files=[("images", ("big.png", data, "image/png"))], timeout=30)
    assert_error(r, 413, "image_too_large", "1048576")


def test_too_many_pixels(server):
    from PIL import Image

    data = encode(Image.new("RGB", (2500, 2000), "white"), "PNG")
    r = httpx.post(f"{server.url}/v1/embed", json={"images": [_b64(data)]}, timeout=30)
    assert_error(r, 413, "image_too_large", "downscale")


@pytest.mark.parametrize("payload", [{}, {"texts": []}, {"texts": [], "images": []}])
def test_empty_request(server, payload):
    assert_error(httpx.post(f"{server.url}/v1/embed", json=payload, timeout=30), 400, "empty_request")


def test_empty_body(server):
    r = httpx.post(f"{server.url}/v1/embed", content=b"", headers={"content-type": "application/json"}, timeout=30)
    assert_error(r, 400, "empty_request")


def test_malformed_json(server):
    r = httpx.post(f"{server.url}/v1/embed", content=b'{"texts": [', headers={"content-type": "application/json"}, timeout=30)
    assert_error(r, 422, "invalid_request", "not valid JSON")


def test_unknown_fields(server):
    """A key the route does not have is unknown_field, in the body, a form or an `inputs` item."""
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"videos": ["x"]}, timeout=30), 422, "unknown_field", "videos", "texts")
    assert_error(httpx.post(f"{server.url}/v1/embed", files={"videos": ("v.mp4", b"x")}, timeout=30), 422, "unknown_field", "videos")
    r = httpx.post(f"{server.url}/v1/embed", json={"inputs": [{"video": "x"}]}, timeout=30)
    assert_error(r, 422, "unknown_field", "inputs[0]")


def test_modality_without_tower(server):
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"audios": ["x"]}, timeout=30), 400, "modality_not_served", "audio")


def test_wrong_types(server):
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"texts": "not a list"}, timeout=30), 422, "invalid_request", "texts")
    assert_error(httpx.post(f"{server.url}/v1/embed", json={"texts": ["a"], "encoding": "hex"}, timeout=30), 422, "invalid_request", "encoding")


def test_text_over_context_with_truncate_false(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"texts": ["ok", "word " * 200], "truncate": False}, timeout=30)
    assert_error(r, 422, "text_too_long", "texts[1]", "77")


def test_text_over_character_limit(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"texts": ["z" * 100_001]}, timeout=30)
    assert_error(r, 422, "text_too_long", "100000")


def test_url_image_is_explained(server):
    r = httpx.post(f"{server.url}/v1/embed", json={"images": ["https://example.com/cat.jpg"]}, timeout=30)
    assert_error(r, 422, "invalid_request", "URL")


def test_unknown_route(server):
    assert_error(httpx.get(f"{server.url}/v1/nothing", timeout=10), 404, "not_found", "/docs")
