"""Bulk `add` with several requests in flight, lazily read items, and resuming, against a real `omnivec serve`."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from omnivec.server_process import ServerProcess
from omnivec_client import AsyncClient, Client, Item, RetryPolicy, content_id
from omnivec_client.bulk import DEFAULT_CONCURRENCY
from tests.http_checks import assert_still_serving

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01)


class Recorder:
    """Counts what reaches the server: request paths, and the texts each add request carries."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.sent_texts: list[str] = []
        self.exists_calls = 0

    def __call__(self, request: httpx.Request) -> None:
        path = request.url.path
        self.paths.append(path)
        if path.endswith("/items/exists"):
            self.exists_calls += 1
        elif path.endswith("/items"):
            self.sent_texts += [i["text"] for i in json.loads(request.content)["items"] if "text" in i]


def client(url: str, recorder: Recorder, **kwargs) -> Client:
    http = httpx.Client(base_url=url, timeout=60, event_hooks={"request": [recorder]})
    return Client(url, retry=FAST_RETRY, http_client=http, **kwargs)


def text_rows(server_url: str) -> float:
    """Texts the server's model embedded so far (omnivec_rows_total{tower="text"} in /metrics)."""
    metrics = httpx.get(f"{server_url}/metrics", timeout=10).text
    found = re.search(r'^omnivec_rows_total\{tower="text"\} ([0-9.e+]+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def collection(server, request):
    name = f"bulk-{request.node.name[:40]}"
    httpx.post(f"{server.url}/v1/collections", json={"name": name}, timeout=30).raise_for_status()
    yield name
    httpx.delete(f"{server.url}/v1/collections/{name}", timeout=60)
    assert_still_serving(server.url)


def test_concurrent_add_indexes_each_item_once_with_ids_and_errors_by_position(server, collection, tmp_path):
    missing = tmp_path / "missing.png"
    bad = {7: Item(image=b"not an image", id="bad-7"), 23: Item.from_file(missing, id="gone-23"), 41: Item(image=b"\x89PNG broken", id="bad-41")}
    texts = {i: f"bulk item number {i}" for i in range(60) if i not in bad}

    def items():  # a generator: the client never needs the whole list
        for i in range(60):
            yield bad.get(i) or Item(text=texts[i], payload={"i": i})

    recorder = Recorder()
    with client(server.url, recorder, batch_size=5, concurrency=4) as omni:
        result = omni.add(collection, items(), total=60)
    assert [(e.index, e.id, e.code) for e in result.errors] == [(7, "bad-7", "invalid_image"), (23, "gone-23", "unreadable_file"), (41, "bad-41", "invalid_image")]
    assert result.indexed == 57 and result.skipped == 0 and len(result.ids) == 60
    assert all(result.ids[i] is None for i in bad)
    assert all(result.ids[i] == content_id("text", t) for i, t in texts.items())
    assert sorted(recorder.sent_texts) == sorted(texts.values()), "every text sent exactly once"
    assert httpx.get(f"{server.url}/v1/collections/{collection}", timeout=10).json()["count"] == 57
    with Client(server.url) as omni:
        assert omni.get(collection, result.ids[42]).payload == {"i": 42}


def test_an_interrupted_job_resumes_sending_only_what_is_missing(server, collection):
    texts = [f"resumable note {i}" for i in range(150)]

    class Killed(Exception):
        pass

    def dies_after(n: int):
        for i, text in enumerate(texts):
            if i == n:
                raise Killed  # the job's source fails mid-way, with requests in flight
            yield Item(text=text)

    with Client(server.url, retry=FAST_RETRY, batch_size=8, concurrency=3) as omni:
        with pytest.raises(Killed):
            omni.add(collection, dies_after(97), skip_existing=True)
    stored = set(Client(server.url).exists(collection, [content_id("text", t) for t in texts]))
    assert 0 < len(stored) <= 97
    before = text_rows(server.url)
    recorder = Recorder()
    with client(server.url, recorder, batch_size=8, concurrency=3) as omni:
        result = omni.add(collection, [Item(text=t) for t in texts], skip_existing=True)
    missing = [t for t in texts if content_id("text", t) not in stored]
    assert (result.skipped, result.indexed, result.errors) == (len(stored), len(missing), [])
    assert sorted(recorder.sent_texts) == sorted(missing), "only the missing items are sent"
    assert text_rows(server.url) - before == len(missing), "the server's model embedded only the missing items"
    assert result.ids == [content_id("text", t) for t in texts]


def test_resuming_a_large_done_prefix_takes_few_exists_calls(server, collection):
    texts = [f"prefix row {i}" for i in range(1200)]
    with Client(server.url, batch_size=16) as omni:
        assert omni.add(collection, [Item(text=t) for t in texts[:1000]]).indexed == 1000
    recorder = Recorder()
    with client(server.url, recorder, batch_size=16, concurrency=2) as omni:
        result = omni.add(collection, (Item(text=t) for t in texts), skip_existing=True)
    assert (result.skipped, result.indexed) == (1000, 200)
    assert sorted(recorder.sent_texts) == sorted(texts[1000:])
    assert recorder.exists_calls < 1200 // 16 // 2, "slices grow while everything in them is stored"


def test_the_async_client_keeps_several_requests_in_flight(server, collection):
    texts = [f"async bulk {i}" for i in range(40)]

    async def main():
        async with AsyncClient(server.url, retry=FAST_RETRY, batch_size=4, concurrency=5) as omni:
            return await omni.add(collection, (Item(text=t) for t in texts))

    result = asyncio.run(main())
    assert result.indexed == 40 and result.ids == [content_id("text", t) for t in texts]


def test_429_from_the_servers_admission_is_retried(tiny_bundle, tmp_path):
    """A server admitting one model request at a time answers the others 429 + Retry-After; the client waits and resends."""
    env = {"OMNIVEC_DATA_DIR": str(tmp_path / "data"), "OMNIVEC_LIMITS__MAX_CONCURRENT_REQUESTS": "1"}
    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "server.log") as busy:
        httpx.post(f"{busy.url}/v1/collections", json={"name": "busy"}, timeout=30).raise_for_status()
        statuses: list[int] = []
        http = httpx.Client(base_url=busy.url, timeout=60, event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
        with Client(busy.url, http_client=http, retry=RetryPolicy(attempts=30, max_delay_s=1.0), batch_size=4, concurrency=4) as omni:
            result = omni.add("busy", [Item(text=f"busy {i}") for i in range(48)])
        assert result.indexed == 48 and not result.errors
        assert 429 in statuses, "the server refused some requests while busy"
        assert httpx.get(f"{busy.url}/v1/collections/busy", timeout=10).json()["count"] == 48


def test_concurrency_is_checked_and_defaults_match_the_cli():
    from omnivec.parser import INDEX_CONCURRENCY

    assert INDEX_CONCURRENCY == DEFAULT_CONCURRENCY
    with pytest.raises(ValueError, match="concurrency"):
        Client("http://127.0.0.1:9", concurrency=0)
    with Client("http://127.0.0.1:9") as omni, pytest.raises(ValueError, match="concurrency"):
        omni.add("x", [Item(text="a")], concurrency=0)
