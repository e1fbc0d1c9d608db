"""The OpenAPI document says what the server does: a property-based fuzz run over /openapi.json, and the rules behind it.

The fuzz run is schemathesis (its CLI, in a child process) against `omnivec serve` on 127.0.0.1: every
operation, examples + coverage (boundary values, unsupported methods) + fuzzing phases, a bounded number
of cases per operation, deterministic generation. It must find no server error, no response that breaks
its documented schema, status code, content type or headers, and no 405 without a matching `Allow`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from omnivec.server_process import ServerProcess
from tests.conftest import AUDIO_SERVER_ENV
from tests.http_checks import assert_error, assert_still_serving

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
)
MAX_EXAMPLES = 10  # per operation and phase; about 650 requests in all


@pytest.fixture(scope="module")
def fuzzed_server(tiny_audio_bundle, tmp_path_factory):
    """A server of its own: the fuzzer creates and deletes collections and label sets at random."""
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {**AUDIO_SERVER_ENV, "OMNIVEC_DATA_DIR": str(tmp / "data"), "OMNIVEC_FETCH__ALLOW_PRIVATE": "[]"}
    with ServerProcess(tiny_audio_bundle, log=tmp / "server.log", env=env) as proc:
        yield proc


def test_schemathesis_finds_nothing(fuzzed_server, tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        f"{fuzzed_server.url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        # A generator-efficiency check, not an API check: with 30 operations it trips at random on the bundle
        # upload (binary bodies of six media types plus a query string); every generated case is still sent and checked.
        "--suppress-health-check", "filter_too_much",
        "--workers", "1",
        "--request-timeout", "60",
        "--no-color",
        "--report", "junit",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-20000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 23, out[-5000:]  # every operation was exercised
    assert_still_serving(fuzzed_server.url)


def test_every_operation_documents_its_errors(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"], "422 answers use ErrorResponse, not FastAPI's default"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = {int(s) for s in operation["responses"]}
            assert 500 in statuses and 413 in statuses, (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/OpenAIErrorResponse" if path == "/v1/embeddings" else "/ErrorResponse"), (method, path, status)
            if "{name}" in path:
                name = next(p for p in operation["parameters"] if p["name"] == "name")
                assert name["schema"]["pattern"].startswith("^[A-Za-z0-9]"), (method, path)
    search = schema["paths"]["/v1/collections/{name}/search"]["post"]["responses"]
    assert {400, 404, 409, 413, 415, 422, 429, 503} <= {int(s) for s in search}
    assert "space_mismatch" in search["409"]["description"] and "Retry-After" in search["429"]["headers"]


def test_schema_limits_come_from_the_running_server(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["components"]["schemas"]
    embed = schema["EmbedRequest"]["properties"]
    assert embed["texts"]["maxItems"] == 1024 and embed["texts"]["items"]["maxLength"] == 100_000  # the settings' defaults
    openai = schema["EmbeddingsRequest"]["properties"]
    assert openai["model"]["enum"] == ["omnivec-tiny"]
    assert openai["dimensions"]["anyOf"][0]["maximum"] == 64 and openai["dimensions"]["anyOf"][0]["minimum"] == 1
    assert not any("x-omnivec-limit" in json.dumps(s) for s in schema.values())


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1/embed"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/collections"),
        ("POST", "/v1/collections/c/items"),
        ("POST", "/v1/collections/c/items/exists"),
        ("POST", "/v1/collections/c/search"),
        ("POST", "/v1/classify"),
        ("PUT", "/v1/labelsets/s"),
    ],
)
def test_hostile_json_is_a_4xx(server, method, path):
    hostile = [
        "[" * 5000 + "]" * 5000,  # RecursionError inside json.loads
        '{"a": ' + "[" * 200 + "]" * 200 + "}",  # parses, too deep for what comes after
        '{"name": "x", "extra": {"n": NaN}}',
        '{"name": "x", "extra": {"n": 1e999}}',
        '{"name": "x", "extra": {"n": 1' + "0" * 5000 + "}}",  # over Python's int digit limit
        b'{"texts": ["\xff\xfe"]}',
    ]
    for body in hostile:
        r = httpx.request(method, f"{server.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422, (body[:40], r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request", error
        assert any(w in error["message"] for w in ("nested deeper than 64", "finite", "float range", "digits", "UTF-8")), error
    assert_still_serving(server.url)


def test_405_names_the_allowed_methods(server):
    for method, path, allowed in (
        ("PUT", "/v1/collections/c", "DELETE, GET"),
        ("DELETE", "/v1/collections/c/items/scroll", "POST"),  # the concrete path wins over .../items/{item_id}
        ("PATCH", "/v1/collections", "GET, POST"),
        ("OPTIONS", "/v1/labelsets/s", "DELETE, GET, PUT"),
        ("GET", "/v1/embed", "POST"),
    ):
        r = httpx.request(method, f"{server.url}{path}", timeout=10)
        assert_error(r, 405, "method_not_allowed", allowed)
        assert r.headers["allow"] == allowed, (method, path)


def test_path_names_follow_the_documented_pattern(server):
    assert_error(httpx.get(f"{server.url}/v1/collections/bad%20name", timeout=10), 422, "invalid_request", "invalid collection name", "letters, digits")
    assert_error(httpx.get(f"{server.url}/v1/collections/ok_name", timeout=10), 404, "collection_not_found")


def test_framework_errors_carry_a_table_code_with_its_status(server):
    """Starlette's multipart limit (a 400 without a code before) is 413 too_many_inputs, which the SDK splits on."""
    files = [("images", (f"{i}.png", b"x", "image/png")) for i in range(1025)]  # one over max_inputs_per_request
    r = httpx.post(f"{server.url}/v1/embed", files=files, timeout=60)
    assert_error(r, 413, "too_many_inputs", "split the request")
    r = httpx.post(f"{server.url}/v1/collections", content=b'{"name": ', headers={"content-type": "application/json"}, timeout=10)
    assert_error(r, 422, "invalid_request", "not acceptable JSON")
    assert_still_serving(server.url)


PATHS_OK = ["tags", "a-b", "meta.color", "items[].sku", "m[0]", "ä", "1abc", '"a key"', "a_b"]
PATHS_BAD = ["~", "a b", "a..b", "a.", "$", "a/b", " a", "a\n", "a[6699474273588985483146]"]


def test_payload_paths_the_engine_refuses_are_422_not_503(server):
    """Payload index keys and filter keys are checked against Qdrant's path syntax before they reach the engine
    (it raised a bare ValueError, answered 503 index_unavailable, and left the collection half-created)."""
    for i, key in enumerate(PATHS_OK):
        r = httpx.post(f"{server.url}/v1/collections", json={"name": f"paths-ok-{i}", "payload_indexes": {key: "keyword"}}, timeout=30)
        assert r.status_code == 201, (key, r.text)
        r = httpx.post(f"{server.url}/v1/collections/paths-ok-{i}/search", json={"query": {"text": "x"}, "filter": {"must": [{"key": key, "match": {"value": "x"}}]}}, timeout=30)
        assert r.status_code == 200, (key, r.text)
    for i, key in enumerate(PATHS_BAD):
        r = httpx.post(f"{server.url}/v1/collections", json={"name": f"paths-bad-{i}", "payload_indexes": {key: "keyword"}}, timeout=30)
        assert_error(r, 422, "invalid_request", "not a payload path")
        assert httpx.get(f"{server.url}/v1/collections/paths-bad-{i}", timeout=10).status_code == 404  # nothing left behind
        r = httpx.post(f"{server.url}/v1/collections/paths-ok-0/search", json={"query": {"text": "x"}, "filter": {"must": [{"key": key, "match": {"value": "x"}}]}}, timeout=30)
        assert_error(r, 422, "invalid_filter", "not a payload path")
    for i in range(len(PATHS_OK)):
        httpx.delete(f"{server.url}/v1/collections/paths-ok-{i}", timeout=30)
    assert_still_serving(server.url)
