"""POST /v1/embeddings through the official `openai` package and LangChain, against `omnivec serve` on 127.0.0.1.

Vectors are checked against the native /v1/embed answer for the same inputs (same model, same
preprocessing), token counts against the bundle's own tokenizer.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys

import httpx
import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from omnivec.server.api.app import create_app
from omnivec.server.preprocess.text import clean_text
from omnivec.server.settings import Settings
from tests.http_checks import assert_still_serving
from tests.inprocess import InProcessServer
from tests.media import audio_files, encode, sample_files, scene
from tests.media_server import MediaServer

MODEL = "omnivec-tiny-audio"
DIM = 64
TEXTS = ["a photo of a dog", "A RED CIRCLE &amp; a blue square", "日本語 and emoji 🐶", "word " * 120]
# float32 vectors of the same inputs may come out of differently sized batches: the sums inside the
# model are then ordered differently, so equal up to float32 rounding of a 64-d unit vector.
ATOL = 1e-5


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _native(url: str, **body) -> np.ndarray:
    r = httpx.post(f"{url}/v1/embed", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return np.array([item["embedding"] for item in r.json()["data"]], dtype=np.float32)


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(autouse=True)
def _server_stays_healthy(audio_server):
    yield
    assert_still_serving(audio_server.url)


def test_openai_client_float_and_base64_match_the_native_api(audio_server):
    client = _client(audio_server)
    expected = _native(audio_server.url, texts=TEXTS)
    as_float = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    default = client.embeddings.create(model=MODEL, input=TEXTS)  # the client asks for base64 and decodes it itself
    assert as_float.model == MODEL and as_float.object == "list"
    assert [d.index for d in as_float.data] == list(range(len(TEXTS)))
    for response in (as_float, default):
        got = np.array([d.embedding for d in response.data], dtype=np.float32)
        assert got.shape == (len(TEXTS), DIM)
        np.testing.assert_allclose(got, expected, atol=ATOL)
    raw = httpx.post(f"{audio_server.url}/v1/embeddings", json={"model": MODEL, "input": TEXTS[0], "encoding_format": "base64"}, timeout=30).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=ATOL)
    single = client.embeddings.create(model=MODEL, input=TEXTS[1], encoding_format="float")  # a bare string
    np.testing.assert_allclose(single.data[0].embedding, expected[1], atol=ATOL)


def test_usage_counts_tokens_with_the_models_tokenizer(audio_server, tiny_audio_bundle):
    import json

    manifest = json.loads((tiny_audio_bundle / "manifest.json").read_text())
    spec = manifest["towers"]["text"]["preprocess"]
    tokenizer = Tokenizer.from_file(str(tiny_audio_bundle / spec["file"]))
    tokenizer.enable_truncation(max_length=spec["context_length"])
    tokenizer.no_padding()
    expected = sum(len(tokenizer.encode(clean_text(t, spec["cleaning"])).ids) for t in TEXTS)
    response = _client(audio_server).embeddings.create(model=MODEL, input=TEXTS)
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected
    assert expected > len(TEXTS) * 2  # real counts (special tokens included), not one per input
    image_only = _client(audio_server).embeddings.create(model=MODEL, input=[{"image": _data_uri(sample_files()["alpha.png"], "image/png")}])  # type: ignore[list-item]
    assert image_only.usage.prompt_tokens == 0


def test_many_inputs_in_one_call_are_batched_and_keep_their_order(audio_server):
    texts = [f"item number {i} is a {['red', 'green', 'blue'][i % 3]} {['circle', 'square'][i % 2]}" for i in range(300)]
    response = _client(audio_server).embeddings.create(model=MODEL, input=texts, encoding_format="float")
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert [d.index for d in response.data] == list(range(300))
    np.testing.assert_allclose(got, _native(audio_server.url, texts=texts), atol=ATOL)


def test_async_client_concurrent_calls(audio_server):
    async def run() -> list:
        client = openai.AsyncOpenAI(base_url=f"{audio_server.url}/v1", api_key="unused", max_retries=0, timeout=60)
        try:
            return await asyncio.gather(*(client.embeddings.create(model=MODEL, input=[t, t.upper()]) for t in TEXTS))
        finally:
            await client.close()

    responses = asyncio.run(run())
    expected = _native(audio_server.url, texts=TEXTS)
    for response, want in zip(responses, expected):
        np.testing.assert_allclose(response.data[0].embedding, want, atol=ATOL)


def test_dimensions_is_a_renormalised_prefix(audio_server):
    client = _client(audio_server)
    full = _native(audio_server.url, texts=TEXTS[:2])
    response = client.embeddings.create(model=MODEL, input=TEXTS[:2], dimensions=16, encoding_format="float")
    got = np.array([d.embedding for d in response.data])
    want = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert got.shape == (2, 16)
    np.testing.assert_allclose(got, want, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=DIM).data[0].embedding) == DIM
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model=MODEL, input="x", dimensions=DIM + 1)
    assert refused.value.param == "dimensions" and refused.value.code == "invalid_request"
    assert f"1..{DIM}" in refused.value.message and refused.value.type == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model=MODEL, input="x", dimensions=0)


def test_images_and_audio_as_object_items_in_the_shared_space(audio_server):
    png = sample_files()["alpha.png"]
    jpeg = encode(scene(seed=3), "JPEG")
    wav = audio_files()["tone.wav"]
    inputs = [
        "a photo of a dog",
        {"image": _data_uri(png, "image/png")},
        {"audio": _data_uri(wav, "audio/wav")},
        {"image": base64.b64encode(jpeg).decode()},  # bare base64 works too
        {"text": "a red circle"},
    ]
    response = _client(audio_server).embeddings.create(model=MODEL, input=inputs, encoding_format="float")  # type: ignore[arg-type]
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    native = _native(
        audio_server.url,
        inputs=[{"text": "a photo of a dog"}, {"image": _data_uri(png, "image/png")}, {"audio": _data_uri(wav, "audio/wav")}, {"image": base64.b64encode(jpeg).decode()}, {"text": "a red circle"}],
    )
    np.testing.assert_allclose(got, native, atol=ATOL)
    with MediaServer({"p.png": png}) as media:  # a URL item: fetched by the server's guarded fetcher
        by_url = _client(audio_server).embeddings.create(model=MODEL, input=[{"image": f"{media.url}/img/p.png"}], encoding_format="float")  # type: ignore[list-item]
    np.testing.assert_allclose(by_url.data[0].embedding, native[1], atol=ATOL)


def test_errors_use_the_openai_shape_and_say_what_to_do(audio_server):
    client = _client(audio_server)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model" and MODEL in unknown.value.message
    with pytest.raises(openai.UnprocessableEntityError) as tokens:
        client.embeddings.create(model=MODEL, input=[[1, 2, 3]])
    assert "check_embedding_ctx_length=False" in tokens.value.message and tokens.value.param == "input"
    with pytest.raises(openai.UnprocessableEntityError) as broken:
        client.embeddings.create(model=MODEL, input=["ok", {"image": "data:image/png;base64,aGVsbG8="}])  # type: ignore[list-item]
    assert broken.value.code == "invalid_image" and "input[1].image" in broken.value.message and broken.value.param == "input"
    for body, status, param in (
        ({"model": MODEL, "input": ""}, 422, "input"),
        ({"model": MODEL, "input": []}, 400, "input"),
        ({"model": MODEL, "input": ["a", ""]}, 422, "input"),
        ({"model": MODEL, "input": [{"video": "x"}]}, 422, "input"),
        ({"model": MODEL, "input": "a", "encoding_format": "int4"}, 422, "encoding_format"),  # int8 etc. are extensions now
        ({"model": MODEL, "input": "a", "temperature": 1}, 422, "temperature"),
        ({"input": "a"}, 422, "model"),
    ):
        r = httpx.post(f"{audio_server.url}/v1/embeddings", json=body, timeout=30)
        assert r.status_code == status, (body, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, (body, error)
    r = httpx.get(f"{audio_server.url}/v1/embeddings", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"]["type"] == "invalid_request_error"


def test_openai_client_with_api_keys(tiny_audio_bundle, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.model.bundle = tiny_audio_bundle
    settings.model.intra_op_threads = 1
    settings.server.api_keys = "sk-omnivec-test"
    with InProcessServer(create_app(settings)) as server:
        ok = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-omnivec-test", max_retries=0).embeddings.create(model=MODEL, input="a dog")
        assert len(ok.data[0].embedding) == DIM
        with pytest.raises(openai.AuthenticationError) as refused:
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).embeddings.create(model=MODEL, input="a dog")
        assert refused.value.code == "unauthorized" and refused.value.type == "authentication_error"


@pytest.fixture
def no_network(monkeypatch):
    """Fail any name lookup other than the loopback server's: proves a client stays offline."""
    real = socket.getaddrinfo
    attempts: list[str] = []

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(str(host))
            raise OSError(f"network access to {host} blocked by the test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    for name in ("LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield attempts
    assert attempts == [], f"the client tried to reach {attempts}"


def test_langchain_openai_embeddings_offline(audio_server, no_network):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{audio_server.url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        tiktoken_enabled=False,  # no tokenizer download
        check_embedding_ctx_length=False,  # send strings, not tiktoken ids
        chunk_size=7,  # several requests for one call
        max_retries=0,
    )
    docs = [f"document {i}: {TEXTS[i % len(TEXTS)]}" for i in range(20)]
    got = np.array(embeddings.embed_documents(docs), dtype=np.float32)
    np.testing.assert_allclose(got, _native(audio_server.url, texts=docs), atol=ATOL)
    query = embeddings.embed_query(TEXTS[0])
    np.testing.assert_allclose(query, _native(audio_server.url, texts=[TEXTS[0]])[0], atol=ATOL)
    async_docs = asyncio.run(embeddings.aembed_documents(docs[:3]))
    np.testing.assert_allclose(np.array(async_docs, dtype=np.float32), got[:3], atol=ATOL)


def test_readme_openai_example_runs(audio_server, tmp_path):
    from PIL import Image

    from tests.test_readme import readme_block

    red = tmp_path / "red.png"
    Image.new("RGB", (64, 48), "red").save(red)
    code = readme_block("openai", "python").replace("http://127.0.0.1:8000", audio_server.url).replace("omnivec-mini", MODEL)
    code = code.replace("/tmp/red.png", str(red)).replace("dimensions=128", "dimensions=32")  # the test model is 64-d
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("2 ") and int(first.split()[1]) > 4
    assert second == "[32, 32]"
