"""The request path over real HTTP: admission before the body is read, work stopped when the client
leaves (every model route), and every error through the one table (internal errors carry a request
id, 405, storage failures)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
import pytest

from omnivec.server.api.app import create_app
from omnivec.server.bundle import ModelBundle
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.metrics import Metrics
from omnivec.server.services.embedding import EmbeddingService
from omnivec.server.settings import Settings
from tests.http_checks import assert_error
from tests.inprocess import InProcessServer, SlowEncoder


def _server(bundle_dir, data_dir, *, delay: float = 0.0, **limits) -> tuple[InProcessServer, EmbeddingService]:
    settings = Settings(data_dir=data_dir, limits=limits, model={"intra_op_threads": 1}, server={"preprocess_threads": 1})
    bundle = ModelBundle.load(bundle_dir)
    encoders = {m: SlowEncoder(OnnxEncoder(bundle.tower_path(m), m, intra_op_threads=1), delay=delay) for m in bundle.modalities}
    service = EmbeddingService(bundle, settings, encoders=encoders, metrics=Metrics())
    return InProcessServer(create_app(settings, service=service)), service


def test_no_free_permit_is_429_before_the_body_is_read(tiny_bundle, tmp_path):
    """One permit: while a slow embed holds it, a search is refused at once, though its body is still arriving."""
    srv, _ = _server(tiny_bundle, tmp_path, delay=1.5, max_concurrent_requests=1)
    with srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "c"}).status_code == 201
        busy = threading.Thread(target=lambda: httpx.post(f"{srv.url}/v1/embed", json={"texts": ["hold the permit"]}, timeout=30))
        busy.start()
        time.sleep(0.5)
        # A raw connection that declares a body and sends only its first bytes: the answer must come anyway.
        body = b'{"query": {"text": "a red bike"}}'
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as conn:
            head = f"POST /v1/collections/c/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body[:5])
            answer = conn.recv(65536).decode()
            while answer.endswith("\r\n\r\n") or "}}" not in answer:  # headers and body may come in two reads
                answer += conn.recv(65536).decode()
        status_line, _, rest = answer.partition("\r\n")
        assert " 429 " in status_line, answer
        assert "retry-after: 1" in rest.lower() and '"overloaded"' in rest and "max_concurrent_requests" in rest
        busy.join()
        ok = httpx.post(f"{srv.url}/v1/collections/c/search", json={"query": {"text": "a red bike"}}, timeout=30)
        assert ok.status_code == 200, ok.text  # the permit came back


@pytest.mark.parametrize(
    "route, body",
    [
        ("/v1/collections/c/search", {"query": {"text": "an aardvark"}}),
        ("/v1/collections/c/items", {"items": [{"text": "an aardvark"}]}),
        ("/v1/classify", {"inputs": [{"text": "an aardvark"}], "labels": ["x", "y"]}),
    ],
    ids=["search", "add-items", "classify"],
)
def test_a_model_route_whose_client_left_never_reaches_the_model(tiny_bundle, tmp_path, route, body):
    from tokenizers import Tokenizer

    marker = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json")).encode("aardvark").ids[1]
    srv, service = _server(tiny_bundle, tmp_path, delay=0.6)
    with srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "c"}).status_code == 201
        busy = threading.Thread(target=lambda: httpx.post(f"{srv.url}/v1/embed", json={"texts": ["keep the model busy"]}, timeout=30))
        busy.start()
        time.sleep(0.2)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{srv.url}{route}", json=body, timeout=0.2)
        busy.join()
        time.sleep(0.3)
        httpx.post(f"{srv.url}/v1/embed", json={"texts": ["next"]}, timeout=30)
    assert not any(marker in ids for ids in service.encoders["text"].seen_ids), "the abandoned request was embedded"


def test_a_bug_is_500_internal_with_the_request_id_it_was_logged_under(tiny_bundle, tmp_path, caplog):
    srv, _ = _server(tiny_bundle, tmp_path)
    with srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "c"}).status_code == 201

        async def broken(*args, **kwargs):
            raise KeyError("a bug")

        srv.server.config.app.state.search.search = broken
        with caplog.at_level(logging.ERROR, logger="omnivec"):
            r = httpx.post(f"{srv.url}/v1/collections/c/search", json={"query": {"text": "x"}}, timeout=30)
            given = httpx.post(f"{srv.url}/v1/collections/c/search", json={"query": {"text": "x"}}, headers={"X-Request-ID": "trace-42"}, timeout=30)
        assert_error(r, 500, "internal", "KeyError")
        request_id = r.json()["error"]["request_id"]
        assert request_id and r.headers["x-request-id"] == request_id and request_id in r.json()["error"]["message"]
        assert given.json()["error"]["request_id"] == "trace-42"
        logged = [rec for rec in caplog.records if request_id in rec.getMessage()]
        assert logged and logged[0].exc_info is not None, "the traceback is logged under the request id"
        assert httpx.get(f"{srv.url}/healthz").status_code == 200


def test_framework_errors_use_the_table(server):
    r = httpx.delete(f"{server.url}/v1/embed", timeout=30)
    assert_error(r, 405, "method_not_allowed", "DELETE", "/v1/embed")
    assert "POST" in r.headers["allow"]
    assert_error(httpx.get(f"{server.url}/v1/nothing", timeout=30), 404, "not_found")
    broken = httpx.post(
        f"{server.url}/v1/embed", content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"}, timeout=30,
    )
    assert broken.status_code in (400, 422) and broken.json()["error"]["code"] in ("malformed_body", "invalid_request", "empty_request")


def test_a_label_set_that_cannot_be_written_is_500_storage_failed(tiny_bundle, tmp_path):
    (tmp_path / "labelsets").write_text("a file where the label-set directory should be")
    srv, _ = _server(tiny_bundle, tmp_path)
    with srv:
        r = httpx.put(f"{srv.url}/v1/labelsets/scenes", json={"labels": ["beach", "forest"]}, timeout=30)
        assert_error(r, 500, "storage_failed", "labelsets", "permissions")
        assert httpx.post(f"{srv.url}/v1/embed", json={"texts": ["still serving"]}, timeout=30).status_code == 200
