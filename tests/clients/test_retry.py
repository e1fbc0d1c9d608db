"""Retry and wait_ready mechanics of the SDK, on a scripted transport (the HTTP behaviour itself is tested against a real server)."""

from __future__ import annotations

import asyncio
import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from omnivec_client import AsyncClient, Client, OmnivecError, RetryPolicy
from omnivec_client.retry import parse_retry_after


def scripted(*answers: httpx.Response | Exception):
    """A transport answering each request with the next scripted response (or raising the exception)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)  # a fresh one per request

    return handle, seen


def overloaded(retry_after: str = "0") -> httpx.Response:
    body = {"error": {"code": "overloaded", "status": 429, "message": "the text queue is full; retry after 1 s"}}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


OK = httpx.Response(200, json={"data": []})


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after(later) <= 30
    assert RetryPolicy(max_delay_s=5).delay_s(1, retry_after=120) == 5  # never wait longer than the cap
    assert 0.25 <= RetryPolicy(backoff_s=0.5).delay_s(1) <= 0.5 and RetryPolicy(backoff_s=0.5).delay_s(3) <= 2.0


def test_429_and_connection_failures_are_retried_then_succeed():
    handle, seen = scripted(overloaded(), httpx.ConnectError("refused"), OK)
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, retry=RetryPolicy(attempts=3, backoff_s=0.001)) as omni:
        assert omni.models() == []
    assert len(seen) == 3


def test_retries_stop_after_the_policys_attempts_with_the_servers_error():
    handle, seen = scripted(overloaded())
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, retry=RetryPolicy(attempts=2, backoff_s=0.001)) as omni:
        with pytest.raises(OmnivecError) as info:
            omni.models()
    assert len(seen) == 2 and info.value.code == "overloaded" and info.value.retry_after == 0.0


def test_client_errors_are_never_retried():
    body = {"error": {"code": "invalid_image", "status": 422, "message": "cannot decode image 0"}}
    handle, seen = scripted(httpx.Response(422, json=body))
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http) as omni, pytest.raises(OmnivecError, match="cannot decode"):
        omni.embed(images=[b"x"])
    assert len(seen) == 1


def test_health_probes_are_never_retried():
    handle, seen = scripted(httpx.ConnectError("refused"))
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http) as omni, pytest.raises(OmnivecError) as info:
        omni.health()
    assert len(seen) == 1 and info.value.code == "connection_failed"


def test_non_json_errors_keep_their_text():
    handle, _ = scripted(httpx.Response(502, text="Bad Gateway from the proxy"))
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http) as omni, pytest.raises(OmnivecError) as info:
        omni.models()
    assert info.value.code == "http_502" and "proxy" in info.value.message


def test_wait_ready_polls_until_ready_and_gives_up_with_the_last_status():
    loading = httpx.Response(503, json={"status": "indexing the demo collection"})
    handle, seen = scripted(loading, loading, httpx.Response(200, json={"status": "ready"}))
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, retry=RetryPolicy(attempts=1)) as omni:
        assert omni.wait_ready(timeout_s=5, interval_s=0.01)["status"] == "ready"
    assert len(seen) == 3

    handle, _ = scripted(loading)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")

    async def never_ready() -> None:
        async with AsyncClient(http_client=http, retry=RetryPolicy(attempts=1)) as omni:
            await omni.wait_ready(timeout_s=0.05, interval_s=0.01)

    with pytest.raises(OmnivecError, match="demo collection") as info:
        asyncio.run(never_ready())
    assert info.value.code == "not_ready"


def test_a_lost_answer_is_resent_only_where_repeating_is_harmless():
    handle, seen = scripted(httpx.ReadTimeout("slow"), OK)
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, retry=RetryPolicy(attempts=3, backoff_s=0.001)) as omni:
        assert omni.models() == []  # a read: resent
    assert len(seen) == 2

    handle, seen = scripted(httpx.ReadTimeout("slow"), httpx.Response(409, json={"error": {"code": "collection_exists", "status": 409, "message": "exists"}}))
    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, retry=RetryPolicy(attempts=3, backoff_s=0.001)) as omni, pytest.raises(OmnivecError) as info:
        omni.create_collection("photos")  # the create may have happened: not resent, no misleading 409
    assert len(seen) == 1 and info.value.code == "no_answer" and "may have done it" in info.value.message


def test_a_smaller_request_size_learned_from_a_413_is_kept(monkeypatch):
    """A server taking at most 8 inputs: after two refusals (32, 16) every later request has 8."""
    sizes: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["inputs"]
        sizes.append(len(inputs))
        if len(inputs) > 8:
            return httpx.Response(413, json={"error": {"code": "too_many_inputs", "status": 413, "message": "at most 8"}})
        rows = [{"index": i, "input_index": i, "modality": "text", "embedding": [1.0, 0.0]} for i in range(len(inputs))]
        return httpx.Response(200, json={"model": "m", "space_id": "s", "dim": 2, "encoding": "float", "data": rows, "usage": {}})

    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
    with Client(http_client=http, batch_size=32) as omni:
        assert len(omni.embed([f"text {i}" for i in range(64)])) == 64
    assert sizes == [32, 16] + [8] * 8


def test_the_async_client_reads_files_off_the_event_loop(monkeypatch, tmp_path):
    """File reading and encoding run where the client says: in a worker thread for AsyncClient."""
    import threading

    from omnivec_client import operations

    readers: list[str] = []
    real_read = operations.read_media

    def spy(source):
        readers.append(threading.current_thread().name)
        return real_read(source)

    monkeypatch.setattr(operations, "read_media", spy)
    picture = tmp_path / "x.png"
    picture.write_bytes(b"\x89PNG fake")

    def handle(request: httpx.Request) -> httpx.Response:
        rows = [{"index": 0, "input_index": 0, "modality": "image", "embedding": [1.0, 0.0]}]
        return httpx.Response(200, json={"model": "m", "space_id": "s", "dim": 2, "encoding": "float", "data": rows, "usage": {}})

    async def embed_async() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")
        async with AsyncClient(http_client=http) as omni:
            await omni.embed(images=[picture])

    asyncio.run(embed_async())
    with Client(http_client=httpx.Client(transport=httpx.MockTransport(handle), base_url="http://omnivec.test")) as omni:
        omni.embed(images=[picture])
    assert readers[0] != "MainThread" and readers[1] == "MainThread"
