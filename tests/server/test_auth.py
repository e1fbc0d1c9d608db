"""API keys (OMNIVEC_SERVER__API_KEYS): real HTTP against an in-process server, the SDK and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from omnivec.server.api.app import create_app
from omnivec.server.settings import Settings
from omnivec_client import Client, OmnivecError
from tests.http_checks import assert_error
from tests.inprocess import InProcessServer

KEYS = "old-key, new-key"  # two at once: rotation without downtime


@pytest.fixture(scope="module")
def guarded(tiny_bundle, tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth-data"))
    settings.model.bundle = tiny_bundle
    settings.model.intra_op_threads = 1
    settings.server.api_keys = KEYS
    with InProcessServer(create_app(settings)) as server:
        yield server


EMBED = {"texts": ["a red circle"]}


def test_requests_without_a_key_are_refused_with_what_to_send(guarded):
    response = httpx.post(f"{guarded.url}/v1/embed", json=EMBED, timeout=10)
    assert_error(response, 401, "unauthorized", "Authorization: Bearer", "X-API-Key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(f"{guarded.url}/v1/collections", timeout=10), 401, "unauthorized")


def test_a_wrong_key_is_refused(guarded):
    response = httpx.post(f"{guarded.url}/v1/embed", json=EMBED, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert_error(response, 401, "unauthorized", "not valid")


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer old-key"}, {"authorization": "bearer new-key"}, {"X-API-Key": "new-key"}])
def test_every_configured_key_works_in_either_header(guarded, headers):
    response = httpx.post(f"{guarded.url}/v1/embed", json=EMBED, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def test_a_refused_upload_is_not_read(guarded):
    """401 before the body: an unauthenticated client cannot make the server buffer a large upload."""
    response = httpx.post(f"{guarded.url}/v1/embed", content=b"x" * 5_000_000, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 401


def test_probes_metrics_and_docs_stay_open(guarded):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert httpx.get(f"{guarded.url}{path}", timeout=10).status_code == 200, path
    schema = httpx.get(f"{guarded.url}/openapi.json", timeout=10).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert 'status="401"' in httpx.get(f"{guarded.url}/metrics", timeout=10).text, "refused requests are counted"


def test_the_sdk_and_the_cli_send_the_key(guarded, monkeypatch):
    with Client(guarded.url, api_key="new-key") as omni:
        assert len(omni.embed(["a blue square"])) == 1
    with Client(guarded.url) as anonymous, pytest.raises(OmnivecError) as info:
        anonymous.embed(["a blue square"])
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    monkeypatch.setenv("OMNIVEC_API_KEY", "old-key")
    with Client(guarded.url) as from_env:
        assert len(from_env.embed(["a blue square"])) == 1

    cli = [sys.executable, "-m", "omnivec", "classify", "--text", "a dog", "--labels", "dog,car", "--server", guarded.url]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "OMNIVEC_API_KEY"})
    assert refused.returncode == 2 and "unauthorized" in refused.stderr
    accepted = subprocess.run([*cli, "--api-key", "new-key"], capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["input"] == "a dog"


def test_no_keys_means_no_authentication(server):
    assert httpx.post(f"{server.url}/v1/embed", json=EMBED, timeout=30).status_code == 200
