"""Batching through real HTTP: ownership of results, 429 under overload, failure isolation,
cancelled requests, graceful shutdown and metrics — on the real tiny ONNX model."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import httpx
import numpy as np
import pytest

from omnivec.server.api.app import create_app
from omnivec.server.bundle import ModelBundle
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.services.embedding import EmbeddingService
from omnivec.server.settings import Settings
from tests.inprocess import InProcessServer, SlowEncoder
from tests.media import encode, scene


def _service(bundle_dir, *, delay=0.0, poison_token=None, **batching) -> EmbeddingService:
    settings = Settings()
    settings.model.intra_op_threads = 1
    settings.server.preprocess_threads = 1
    for key, value in batching.items():
        setattr(settings.batching, key, value)
    bundle = ModelBundle.load(bundle_dir)
    encoders = {
        m: SlowEncoder(OnnxEncoder(bundle.tower_path(m), m, intra_op_threads=1), delay=delay, poison_token=poison_token)
        for m in bundle.modalities
    }
    from omnivec.server.metrics import Metrics

    return EmbeddingService(bundle, settings, encoders=encoders, metrics=Metrics())


def _app(service):
    return create_app(service.settings, service=service)


async def _post_all(url: str, payloads: list[dict], timeout: float = 60) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(payloads))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/embed", json=p) for p in payloads))


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_many_concurrent_clients_get_exactly_their_own_embeddings(server):
    texts = [f"caption number {i} about a {['cat', 'dog', 'car', 'tree'][i % 4]}" for i in range(40)]
    images = [base64.b64encode(encode(scene(40 + i, 30 + 2 * i, seed=i), "PNG")).decode() for i in range(8)]
    singles = {t: httpx.post(f"{server.url}/v1/embed", json={"texts": [t]}, timeout=30).json()["data"][0]["embedding"] for t in texts}
    single_images = [httpx.post(f"{server.url}/v1/embed", json={"images": [im]}, timeout=30).json()["data"][0]["embedding"] for im in images]
    payloads = [{"texts": [t]} for t in texts] + [{"images": [im], "texts": [texts[i]]} for i, im in enumerate(images)]
    responses = asyncio.run(_post_all(server.url, payloads))
    for payload, response in zip(payloads, responses):
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        np.testing.assert_allclose(data[0]["embedding"], singles[payload["texts"][0]], atol=1e-5)
        if "images" in payload:
            i = images.index(payload["images"][0])
            np.testing.assert_allclose(data[1]["embedding"], single_images[i], atol=1e-5)


def test_batching_merges_requests_over_http(tiny_bundle):
    service = _service(tiny_bundle, delay=0.1, max_batch=32)
    with InProcessServer(_app(service)) as srv:
        responses = asyncio.run(_post_all(srv.url, [{"texts": [f"text {i}"]} for i in range(24)]))
        assert all(r.status_code == 200 for r in responses)
        metrics = httpx.get(f"{srv.url}/metrics").text
    text_batches = service.encoders["text"].batches
    assert max(text_batches) > 4, f"requests were not merged: {text_batches}"
    assert sum(text_batches) == 24
    assert _metric(metrics, "omnivec_batch_size_count", tower="text") == len(text_batches)
    assert _metric(metrics, "omnivec_requests_total", route="/v1/embed", status="200") == 24


def test_saturated_queue_is_429_with_retry_after_and_recovers(tiny_bundle):
    service = _service(tiny_bundle, delay=0.3, max_batch=2, max_queue=4)
    with InProcessServer(_app(service)) as srv:
        responses = asyncio.run(_post_all(srv.url, [{"texts": [f"load {i}", f"more {i}"]} for i in range(12)]))
        statuses = sorted(r.status_code for r in responses)
        rejected = [r for r in responses if r.status_code == 429]
        assert rejected and 200 in statuses and set(statuses) <= {200, 429}, statuses
        for r in rejected:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "overloaded" and "retry" in r.json()["error"]["message"]
        ok = httpx.post(f"{srv.url}/v1/embed", json={"texts": ["after the storm"]}, timeout=30)
        assert ok.status_code == 200
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert _metric(metrics, "omnivec_rejected_total", tower="text") == len(rejected)
    assert _metric(metrics, "omnivec_requests_total", route="/v1/embed", status="429") == len(rejected)


def test_sdk_callers_ride_out_overload_by_honouring_retry_after(tiny_bundle):
    """The same saturated server: AsyncClient callers get 429s, wait as told, and all succeed."""
    from omnivec_client import AsyncClient, RetryPolicy

    service = _service(tiny_bundle, delay=0.3, max_batch=2, max_queue=4)

    async def many(url: str) -> list:
        async with AsyncClient(url, retry=RetryPolicy(attempts=20, max_delay_s=5)) as omni:
            return await asyncio.gather(*(omni.embed([f"load {i}", f"more {i}"]) for i in range(12)))

    with InProcessServer(_app(service)) as srv:
        results = asyncio.run(many(srv.url))
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert [len(r) for r in results] == [2] * 12
    assert _metric(metrics, "omnivec_requests_total", route="/v1/embed", status="429") > 0, "the server did push back"
    assert _metric(metrics, "omnivec_requests_total", route="/v1/embed", status="200") == 12


def test_input_that_breaks_the_model_fails_only_its_request(tiny_bundle):
    from tokenizers import Tokenizer

    poison = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json")).encode("zebra").ids[1]
    service = _service(tiny_bundle, delay=0.05, poison_token=poison, max_batch=32)
    with InProcessServer(_app(service)) as srv:
        payloads = [{"texts": [f"harmless text {i}"]} for i in range(15)]
        payloads.insert(7, {"texts": ["a zebra"]})
        responses = asyncio.run(_post_all(srv.url, payloads))
        for payload, response in zip(payloads, responses):
            if payload["texts"] == ["a zebra"]:
                assert response.status_code == 500 and response.json()["error"]["code"] == "inference_failed"
            else:
                assert response.status_code == 200, response.text
        assert httpx.post(f"{srv.url}/v1/embed", json={"texts": ["still serving"]}, timeout=30).status_code == 200


def test_request_from_a_client_that_left_never_reaches_the_model(tiny_bundle):
    from tokenizers import Tokenizer

    marker = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json")).encode("aardvark").ids[1]
    service = _service(tiny_bundle, delay=0.6, max_batch=4)
    with InProcessServer(_app(service)) as srv:
        busy = threading.Thread(target=lambda: httpx.post(f"{srv.url}/v1/embed", json={"texts": ["keep the model busy"]}, timeout=30))
        busy.start()
        time.sleep(0.2)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{srv.url}/v1/embed", json={"texts": ["an aardvark"]}, timeout=0.2)
        busy.join()
        time.sleep(0.3)
        httpx.post(f"{srv.url}/v1/embed", json={"texts": ["next"]}, timeout=30)
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert not any(marker in ids for ids in service.encoders["text"].seen_ids)
    assert _metric(metrics, "omnivec_cancelled_rows_total", tower="text") >= 1


def test_shutdown_finishes_queued_work_then_stops(tiny_bundle):
    service = _service(tiny_bundle, delay=0.2, max_batch=2)
    srv = InProcessServer(_app(service)).__enter__()
    results: list[int] = []

    def client(i: int) -> None:
        results.append(httpx.post(f"{srv.url}/v1/embed", json={"texts": [f"in flight {i}"]}, timeout=30).status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    runner = service.runners["text"]
    deadline = time.monotonic() + 20
    while runner.queued_rows + sum(service.encoders["text"].batches) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)  # every request has reached the batcher
    srv.shutdown()
    for t in threads:
        t.join(30)
    srv.thread.join(30)
    assert results == [200] * 6, results
    assert not srv.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{srv.url}/v1/embed", json={"texts": ["too late"]}, timeout=2)
