"""Audio through real HTTP: /v1/embed, collections, search and classify against `omnivec serve` on
omnivec-tiny-audio (image + text + audio towers, 16 kHz, 1.0 s windows every 0.5 s, at most 120 s).

The tower is random, so semantics mean nothing; what is checked is parity with PyTorch, pooling,
spans, determinism, routing by modality and every bad input's error.
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from omnivec.server.bundle import ModelBundle
from omnivec.server.ids import content_id
from omnivec.server.preprocess.audio import preprocess_audio
from omnivec.server.services.zero_shot import DEFAULT_AUDIO_TEMPLATES
from omnivec.server_process import ServerProcess
from tests.conftest import AUDIO_SERVER_ENV
from tests.media import audio_files, encode, encode_audio, scene, sound_clips, tone
from tests.media_server import MediaServer
from tests.http_checks import assert_error

AUDIO = audio_files()  # one 440 Hz, 1.3 s tone in every accepted format
CLIPS = sound_clips()  # distinct sounds, one per format
IMAGES = {f"p{i}.png": encode(scene(48 + 6 * i, 40, seed=30 + i), "PNG") for i in range(3)}
TEXTS = ["a dog barking", "rain on a roof", "a police siren"]
MIME = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/ogg", "mp3": "audio/mpeg"}
SILENT = encode_audio(np.zeros(16000, np.float32), 16000)
WAV = encode_audio(tone(330.0, 1.0, 16000), 16000)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _mime(name: str) -> str:
    return MIME[name.rsplit(".", 1)[1]]


def _uri(name: str, data: bytes) -> str:
    return f"data:{_mime(name)};base64,{_b64(data)}"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _vectors(body: dict) -> np.ndarray:
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float64)


def _post(server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=60, **kwargs)


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def spec(tiny_audio_bundle):
    return ModelBundle.load(tiny_audio_bundle).manifest.towers["audio"].preprocess


@pytest.fixture(scope="module")
def reference(tiny_audio_loaded, spec):
    """PyTorch: unit window embeddings of the server's own windows, and their renormalised mean."""
    import torch

    def embed(data: bytes) -> tuple[np.ndarray, np.ndarray]:
        windows = preprocess_audio(data, spec).windows
        with torch.no_grad():
            rows = _unit(tiny_audio_loaded.model.encode_audio(torch.from_numpy(windows)).numpy().astype(np.float64))
        return _unit(rows.mean(axis=0)), rows

    return embed


@pytest.fixture(autouse=True)
def _server_stays_healthy(audio_server):
    yield
    assert httpx.get(f"{audio_server.url}/healthz", timeout=5).status_code == 200
    ok = _post(audio_server, "/v1/embed", json={"audios": [_b64(WAV)], "texts": ["still alive"]})
    assert ok.status_code == 200, "the server must keep serving after every test"


# --- /v1/embed ----------------------------------------------------------------------------------


def test_every_format_by_json_data_uri_and_multipart_matches_pytorch(audio_server, reference):
    names = sorted(AUDIO)
    body = _ok(_post(audio_server, "/v1/embed", json={"audios": [_b64(AUDIO[n]) for n in names]}))
    assert body["model"] == "omnivec-tiny-audio" and body["dim"] == 64
    data = body["data"]
    assert [(d["modality"], d["input_index"], d["windows"], d["truncated"]) for d in data] == [("audio", i, None, None) for i in range(5)]
    assert all(abs(d["duration_s"] - 1.3) < 0.1 for d in data), [d["duration_s"] for d in data]
    usage = body["usage"]
    assert usage["audios"] == 5 and usage["texts"] == usage["images"] == 0
    assert usage["audio_seconds"] == pytest.approx(sum(d["duration_s"] for d in data), abs=1e-3)
    served = _vectors(body)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    cos = (served * np.stack([reference(AUDIO[n])[0] for n in names])).sum(1)
    assert cos.min() >= 0.99999, dict(zip(names, cos.round(7)))

    uris = _ok(_post(audio_server, "/v1/embed", json={"audios": [_uri(n, AUDIO[n]) for n in names]}))
    np.testing.assert_allclose(_vectors(uris), served, atol=1e-6)
    files = [("audios", (n, AUDIO[n], "application/octet-stream" if n.endswith("mp3") else _mime(n))) for n in names]
    multipart = _ok(_post(audio_server, "/v1/embed", files=files))
    np.testing.assert_allclose(_vectors(multipart), served, atol=1e-6)
    assert [d["input_index"] for d in multipart["data"]] == list(range(5))


def test_windows_and_spans_of_a_2_3_s_file(audio_server, reference):
    data = encode_audio(tone(330.0, 2.3, 16000), 16000)
    item = _ok(_post(audio_server, "/v1/embed", json={"audios": [_b64(data)], "audio_windows": True}))["data"][0]
    assert item["duration_s"] == pytest.approx(2.3, abs=1e-6)
    spans = [(w["start_s"], w["end_s"]) for w in item["windows"]]
    np.testing.assert_allclose(spans, [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.3, 2.3)], atol=1e-9, err_msg="hop 0.5 s, the last window aligned to the end")
    windows = np.array([w["embedding"] for w in item["windows"]])
    np.testing.assert_allclose(np.linalg.norm(windows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(item["embedding"], _unit(windows.mean(axis=0)), atol=1e-6)
    pooled, rows = reference(data)
    assert (windows * rows).sum(1).min() >= 0.99999 and float(np.dot(item["embedding"], pooled)) >= 0.99999

    # multipart, base64 encoding: the same windows
    form = {"audio_windows": "true", "encoding": "base64"}
    item64 = _ok(_post(audio_server, "/v1/embed", files=[("audios", ("long.wav", data, "audio/wav"))], data=form))["data"][0]
    decoded = np.stack([np.frombuffer(base64.b64decode(w["embedding"]), dtype="<f4") for w in item64["windows"]])
    np.testing.assert_allclose(decoded, windows, atol=1e-6)
    assert [(w["start_s"], w["end_s"]) for w in item64["windows"]] == [(w["start_s"], w["end_s"]) for w in item["windows"]]


def test_same_file_gives_identical_vectors_across_requests_and_processes(audio_server, tiny_audio_bundle, tmp_path):
    body = {"audios": [_b64(CLIPS["sweep.opus"]), _b64(CLIPS["sweep.opus"]), _b64(AUDIO["tone.mp3"])], "encoding": "base64"}
    first = _ok(_post(audio_server, "/v1/embed", json=body))["data"]
    assert first[0]["embedding"] == first[1]["embedding"], "twice in one request"
    assert _ok(_post(audio_server, "/v1/embed", json=body))["data"] == first, "again in a second request"
    env = {**AUDIO_SERVER_ENV, "OMNIVEC_DATA_DIR": str(tmp_path / "data")}
    with ServerProcess(tiny_audio_bundle, env=env, log=tmp_path / "second.log") as other:
        assert _ok(_post(other, "/v1/embed", json=body))["data"] == first, "and in another server process"


def test_order_inputs_and_default(audio_server):
    png = _b64(IMAGES["p0.png"])
    body = {"inputs": [{"audio": _b64(WAV)}, {"text": "a bell"}, {"image": png}, {"audio": _uri("x.wav", WAV)}]}
    data = _ok(_post(audio_server, "/v1/embed", json=body))["data"]
    assert [(d["modality"], d["input_index"]) for d in data] == [("audio", 0), ("text", 1), ("image", 2), ("audio", 3)]
    assert data[0]["embedding"] == data[3]["embedding"] and data[0]["duration_s"] == pytest.approx(1.0)
    body = {"audios": [_b64(WAV)], "images": [png], "texts": ["a", "b"]}
    usage_body = _ok(_post(audio_server, "/v1/embed", json=body))
    assert [(d["modality"], d["input_index"]) for d in usage_body["data"]] == [("text", 0), ("text", 1), ("image", 0), ("audio", 0)]
    assert (usage_body["usage"]["texts"], usage_body["usage"]["images"], usage_body["usage"]["audios"]) == (2, 1, 1)
    form = [("audios", ("a.wav", WAV, "audio/wav")), ("texts", (None, "a")), ("images", ("p.png", IMAGES["p0.png"], "image/png"))]
    assert [d["modality"] for d in _ok(_post(audio_server, "/v1/embed", files=form))["data"]] == ["text", "image", "audio"]


def test_models_and_openapi_list_audio(audio_server):
    (info,) = httpx.get(f"{audio_server.url}/v1/models", timeout=10).json()["data"]
    assert info["modalities"] == ["image", "text", "audio"]
    spec = httpx.get(f"{audio_server.url}/openapi.json", timeout=10).json()
    form = spec["paths"]["/v1/embed"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"audios", "audio_windows"} <= set(form)
    assert {"audios", "audio_windows"} <= set(spec["components"]["schemas"]["EmbedRequest"]["properties"])
    search_form = spec["paths"]["/v1/collections/{name}/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "audio" in search_form["properties"]


# --- bad audio: a specific 4xx naming the item ----------------------------------------------------


@pytest.mark.parametrize(
    "data, status, code, words",
    [
        (b"RIFF\x24\x00\x00\x00WAVEjunk that is not audio", 422, "invalid_audio", ["audios[1]", "could not be decoded", "WAV"]),
        (CLIPS["noise.flac"][:200], 422, "invalid_audio", ["audios[1]"]),
        (IMAGES["p0.png"], 422, "invalid_audio", ["audios[1]"]),
        (encode_audio(np.zeros(0, np.float32), 16000), 422, "invalid_audio", ["audios[1]", "no samples"]),
        (SILENT, 422, "silent_audio", ["audios[1]", "silent"]),
        (encode_audio(tone(100.0, 121.0, 1000), 1000, "WAV", "PCM_U8"), 413, "audio_too_long", ["audios[1]", "121.0 s", "120"]),
        (encode_audio(tone(100.0, 40.0, 16000), 16000), 413, "audio_too_large", ["audios[1]", "1048576"]),
    ],
    ids=["corrupt", "truncated", "image-bytes", "no-samples", "silent", "too-long", "too-many-bytes"],
)
def test_bad_audio_is_a_specific_error(audio_server, data, status, code, words):
    assert_error(_post(audio_server, "/v1/embed", json={"audios": [_b64(WAV), _b64(data)]}), status, code, *words)
    files = [("audios", ("good.wav", WAV, "audio/wav")), ("audios", ("bad.wav", data, "audio/wav"))]
    assert_error(_post(audio_server, "/v1/embed", files=files), status, code, *words, "bad.wav")


def test_bad_audio_requests(audio_server):
    assert_error(_post(audio_server, "/v1/embed", files=[("audios", ("empty.wav", b"", "audio/wav"))]), 422, "invalid_audio", "empty.wav", "empty")
    assert_error(_post(audio_server, "/v1/embed", json={"audios": [""]}), 422, "invalid_base64", "audios[0]")
    r = _post(audio_server, "/v1/embed", files=[("audios", ("notes.txt", b"hello", "text/plain"))])
    assert_error(r, 415, "unsupported_media_type", "notes.txt", "text/plain", "audio/*")
    r = _post(audio_server, "/v1/embed", json={"audios": ["data:image/png;base64," + _b64(IMAGES["p0.png"])]})
    assert_error(r, 415, "unsupported_media_type", "audios[0]", "image/png")
    r = _post(audio_server, "/v1/embed", json={"inputs": [{"text": "ok"}, {"audio": _b64(SILENT)}]})
    assert_error(r, 422, "silent_audio", "inputs[1].audio")
    assert_error(_post(audio_server, "/v1/embed", json={"audio": [_b64(WAV)]}), 422, "unknown_field", "'audios'")
    assert_error(_post(audio_server, "/v1/embed", json={"sounds": [_b64(WAV)]}), 422, "unknown_field", "audios")


def test_a_model_without_an_audio_tower_says_so(server):
    """The tiny image+text bundle: every route answers audio with 400 modality_not_served."""
    expect = (400, "modality_not_served", "audio", "omnivec-tiny")
    assert_error(_post(server, "/v1/embed", json={"audios": [_b64(WAV)]}), *expect)
    assert_error(_post(server, "/v1/embed", json={"inputs": [{"text": "a"}, {"audio": _b64(WAV)}]}), *expect)
    assert_error(_post(server, "/v1/embed", files=[("audios", ("a.wav", WAV, "audio/wav"))]), *expect)
    assert_error(_post(server, "/v1/classify", json={"inputs": [{"audio": _b64(WAV)}], "labels": ["a", "b"]}), *expect)
    assert _post(server, "/v1/collections", json={"name": "no-audio-tower"}).status_code == 201
    try:
        body = _ok(_post(server, "/v1/collections/no-audio-tower/items", json={"items": [{"text": "fine"}, {"audio": _b64(WAV)}]}))
        assert body["indexed"] == 1 and body["errors"][0]["index"] == 1 and body["errors"][0]["code"] == "modality_not_served"
        assert_error(_post(server, "/v1/collections/no-audio-tower/search", json={"query": {"audio": _b64(WAV)}}), *expect)
    finally:
        httpx.delete(f"{server.url}/v1/collections/no-audio-tower", timeout=10)
    assert httpx.post(f"{server.url}/v1/embed", json={"texts": ["still alive"]}, timeout=30).status_code == 200


# --- collections and search --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sounds(audio_server) -> dict[str, str]:
    """A collection of six sounds, three pictures and three captions; returns {name or text: id}."""
    assert _post(audio_server, "/v1/collections", json={"name": "sounds", "payload_indexes": {"kind": "keyword"}}).status_code == 201
    items = [{"audio": _b64(d) if i % 2 else _uri(n, d), "payload": {"kind": "sound", "name": n}} for i, (n, d) in enumerate(CLIPS.items())]
    items += [{"image": _b64(d), "payload": {"kind": "picture", "name": n}} for n, d in IMAGES.items()]
    items += [{"text": t, "payload": {"kind": "caption"}} for t in TEXTS]
    body = _ok(_post(audio_server, "/v1/collections/sounds/items", json={"items": items}))
    assert body["errors"] == [] and body["indexed"] == 12
    return dict(zip([*CLIPS, *IMAGES, *TEXTS], body["ids"]))


def _search(server, **body) -> list[dict]:
    return _ok(_post(server, "/v1/collections/sounds/search", json=body))["results"]


def test_text_to_audio_search(audio_server, sounds):
    hits = _search(audio_server, query={"text": "a dog barking"}, modality="audio", top_k=20)
    assert len(hits) == 6 and {h["modality"] for h in hits} == {"audio"}
    assert {h["payload"]["name"] for h in hits} == set(CLIPS)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    by_filter = _search(audio_server, query={"text": "a dog barking"}, top_k=20, filter={"must": [{"key": "modality", "match": {"value": "audio"}}]})
    assert [h["id"] for h in by_filter] == [h["id"] for h in hits]
    stored = httpx.get(f"{audio_server.url}/v1/collections/sounds/items/{sounds['a440.wav']}", timeout=10).json()
    assert stored["modality"] == "audio" and stored["payload"] == {"kind": "sound", "name": "a440.wav"}
    assert sounds["a440.wav"] == content_id("audio", CLIPS["a440.wav"]), "ids hash the audio file's bytes"


@pytest.mark.parametrize("name", ["sweep.opus", "chord.mp3", "clicks.wav"])
def test_uploaded_audio_finds_itself_first(audio_server, sounds, name):
    params = {"params": json.dumps({"top_k": 3})}
    r = _post(audio_server, "/v1/collections/sounds/search", files={"audio": (name, CLIPS[name], "application/octet-stream")}, data=params)
    hits = _ok(r)["results"]
    assert hits[0]["id"] == sounds[name] and hits[0]["score"] > 0.9999 and hits[1]["score"] < hits[0]["score"]
    # audio -> audio by JSON, audio -> image with the modality filter
    assert _search(audio_server, query={"audio": _b64(CLIPS[name])}, modality="audio", top_k=1)[0]["id"] == sounds[name]
    images = _search(audio_server, query={"audio": _uri(name, CLIPS[name])}, modality="image", top_k=5)
    assert len(images) == 3 and {h["modality"] for h in images} == {"image"} and {h["payload"]["kind"] for h in images} == {"picture"}


def test_multipart_uploads_are_recognised_by_type_extension_and_bytes(audio_server, sounds):
    files = [
        ("files", ("a.bin", CLIPS["a440.wav"], "audio/wav")),  # declared type
        ("files", ("noise.flac", CLIPS["noise.flac"], "application/octet-stream")),  # extension
        ("files", ("blob", CLIPS["pulses.ogg"], "application/octet-stream")),  # magic bytes: OggS
        ("files", ("blob", CLIPS["chord.mp3"], "application/octet-stream")),  # magic bytes: ID3 / MP3 frame
        ("audios", ("pic", IMAGES["p1.png"], "application/octet-stream")),  # magic bytes: PNG, whatever the field
        ("files", ("notes.txt", b"hello", "text/plain")),
    ]
    body = _ok(_post(audio_server, "/v1/collections/sounds/items", files=files))
    expected = [sounds["a440.wav"], sounds["noise.flac"], sounds["pulses.ogg"], sounds["chord.mp3"], sounds["p1.png"], None]
    assert body["ids"] == expected, "same bytes, same content id as the JSON items"
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(5, "unsupported_media_type")] and "notes.txt" in body["errors"][0]["message"]


def test_url_items_route_by_served_type(audio_server, sounds):
    files = {
        "s.wav": (CLIPS["a440.wav"], "audio/wav"),
        "s.flac": (CLIPS["noise.flac"], "application/octet-stream"),  # untyped: extension
        "raw": (CLIPS["sweep.opus"], "application/octet-stream"),  # untyped, no extension: OggS
        "pic": (IMAGES["p2.png"], "image/png"),
        "page": (b"<html></html>", "text/html"),
    }
    with MediaServer({}, files=files) as media:
        items = [{"url": f"{media.url}/file/{name}"} for name in files]
        body = _ok(_post(audio_server, "/v1/collections/sounds/items", json={"items": items}))
        assert body["ids"][:4] == [sounds["a440.wav"], sounds["noise.flac"], sounds["sweep.opus"], sounds["p2.png"]]
        assert [(e["index"], e["code"]) for e in body["errors"]] == [(4, "unsupported_media_type")]
        assert "audio/*" in body["errors"][0]["message"] and "items[4].url" in body["errors"][0]["message"]
        hits = _search(audio_server, query={"url": f"{media.url}/file/raw"}, top_k=1)
        assert hits[0]["id"] == sounds["sweep.opus"] and hits[0]["score"] > 0.9999


def test_bad_audio_items_are_per_item_errors(audio_server, sounds):
    items = [
        {"audio": _b64(CLIPS["clicks.wav"]), "payload": {"ok": True}},
        {"audio": _b64(b"OggS but not really")},
        {"audio": _b64(SILENT)},
        {"audio": _b64(encode_audio(tone(100.0, 121.0, 1000), 1000, "WAV", "PCM_U8"))},
        {"audio": "data:image/png;base64," + _b64(IMAGES["p0.png"])},
        {"audio": "https://example.com/a.wav"},
        {"text": "fine text"},
    ]
    body = _ok(_post(audio_server, "/v1/collections/sounds/items", json={"items": items}))
    codes = {e["index"]: e["code"] for e in body["errors"]}
    assert codes == {1: "invalid_audio", 2: "silent_audio", 3: "audio_too_long", 4: "unsupported_media_type", 5: "invalid_request"}
    assert all(f"items[{e['index']}].audio" in e["message"] for e in body["errors"])
    assert body["ids"][0] == sounds["clicks.wav"] and body["ids"][6] is not None and body["indexed"] == 2


# --- classify ----------------------------------------------------------------------------------


def test_classify_audio_with_the_sound_templates(audio_server):
    labels = ["a dog", "rain", "a siren"]
    body = _ok(_post(audio_server, "/v1/classify", json={"inputs": [{"audio": _b64(CLIPS["noise.flac"])}, {"text": "rain"}], "labels": labels}))
    assert body["scoring"] == "softmax"
    for row in body["results"]:
        assert len(row["labels"]) == 3 and abs(sum(s["score"] for s in row["labels"]) - 1) < 1e-6
    # the cosines are those of the renormalised mean over the default audio templates
    audio = np.array(_ok(_post(audio_server, "/v1/embed", json={"audios": [_b64(CLIPS["noise.flac"])]}))["data"][0]["embedding"])
    prompts = [t.replace("{}", label) for label in labels for t in DEFAULT_AUDIO_TEMPLATES]
    label_vectors = _unit(_vectors(_ok(_post(audio_server, "/v1/embed", json={"texts": prompts}))).reshape(3, len(DEFAULT_AUDIO_TEMPLATES), -1).mean(1))
    expected = dict(zip(labels, label_vectors @ audio))
    assert {s["label"]: s["cosine"] for s in body["results"][0]["labels"]} == pytest.approx(expected, abs=1e-5)

    upload = _post(
        audio_server,
        "/v1/classify",
        files=[("audios", ("n.flac", CLIPS["noise.flac"], "audio/flac"))],
        data={"params": json.dumps({"labels": labels})},
    )
    uploaded, by_json = _ok(upload)["results"][0]["labels"], body["results"][0]["labels"]
    assert [s["label"] for s in uploaded] == [s["label"] for s in by_json]
    np.testing.assert_allclose([s["score"] for s in uploaded], [s["score"] for s in by_json], atol=1e-6)
