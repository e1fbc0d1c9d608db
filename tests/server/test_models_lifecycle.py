"""Several models in one server, hot load and unload: real bundles (omnivec-tiny, two seeds: two spaces),
`omnivec serve --bundle A --bundle NAME=B` in a child process, real HTTP, a real Edge index."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from omnivec.server_process import ServerProcess
from tests.http_checks import assert_error

B = "tiny-b"


@pytest.fixture(scope="module")
def two_models(tiny_bundle, tiny_b_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two-models")
    proc = ServerProcess(tiny_bundle, log=tmp / "server.log", args=["--bundle", f"{B}={tiny_b_bundle}"], env={"OMNIVEC_DATA_DIR": str(tmp / "data")})
    proc.start(timeout=120)
    yield proc
    proc.stop()


def _models(url: str) -> dict:
    response = httpx.get(f"{url}/v1/models", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _wait_ready(url: str, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/models/{name}", timeout=10).json()
        if info["state"] in ("ready", "failed"):
            return info
        time.sleep(0.1)
    raise TimeoutError(f"{name} not loaded within {timeout}s")


def _embed(url: str, texts: list[str], model: str | None = None) -> httpx.Response:
    body: dict = {"texts": texts}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{url}/v1/embed", json=body, timeout=60)


def test_lists_every_model_with_the_first_as_default(two_models):
    body = _models(two_models.url)
    names = [m["name"] for m in body["data"]]
    assert names == ["omnivec-tiny", B] and body["pending"] == []
    default, other = body["data"]
    assert default["default"] and not other["default"]
    assert default["space_id"] != other["space_id"]  # other weights: another space
    for model in body["data"]:
        assert model["state"] == "ready" and model["load_s"] > 0 and model["dim"] > 0
        assert {t["modality"] for t in model["towers"]} == set(model["modalities"])
        assert all(t["probe"]["passed"] for t in model["towers"] if t["probe"])


def test_model_field_picks_the_model_on_every_route(two_models):
    url = two_models.url
    spaces = {m["name"]: m["space_id"] for m in _models(url)["data"]}
    default, named, explicit = _embed(url, ["a red square"]), _embed(url, ["a red square"], B), _embed(url, ["a red square"], "omnivec-tiny")
    for response in (default, named, explicit):
        assert response.status_code == 200, response.text
    assert default.json()["space_id"] == spaces["omnivec-tiny"] == explicit.json()["space_id"]
    assert named.json()["space_id"] == spaces[B] and named.json()["model"] == B
    vec = lambda r: np.asarray(r.json()["data"][0]["embedding"], np.float32)  # noqa: E731
    np.testing.assert_array_equal(vec(default), vec(explicit))
    assert float(vec(default) @ vec(named)) < 0.99  # another model, another vector

    openai = httpx.post(f"{url}/v1/embeddings", json={"model": B, "input": ["a red square"]}, timeout=60)
    assert openai.status_code == 200, openai.text
    np.testing.assert_allclose(openai.json()["data"][0]["embedding"], vec(named), atol=1e-6)

    classify = httpx.post(f"{url}/v1/classify", json={"model": B, "inputs": [{"text": "a cat"}], "labels": ["cat", "dog"]}, timeout=60)
    assert classify.status_code == 200 and classify.json()["space_id"] == spaces[B], classify.text

    multipart = httpx.post(f"{url}/v1/embed", files={"texts": (None, "a red square")}, data={"model": B}, timeout=60)
    assert multipart.status_code == 200 and multipart.json()["space_id"] == spaces[B], multipart.text


def test_unknown_model_is_404_naming_the_loaded_ones(two_models):
    url = two_models.url
    assert_error(_embed(url, ["x"], "nope"), 404, "model_not_found", "'nope'", "omnivec-tiny", B)
    bad = httpx.post(f"{url}/v1/classify", json={"model": "nope", "inputs": [{"text": "a"}], "labels": ["a"]}, timeout=30)
    assert_error(bad, 404, "model_not_found", B)
    openai = httpx.post(f"{url}/v1/embeddings", json={"model": "nope", "input": "x"}, timeout=30)
    assert openai.status_code == 404 and B in openai.json()["error"]["message"]
    assert_error(httpx.get(f"{url}/v1/models/nope", timeout=10), 404, "model_not_found")
    assert_error(httpx.post(f"{url}/v1/models", json={"bundle": "/no/such/bundle"}, timeout=10), 422, "invalid_bundle", "/no/such/bundle")
    assert_error(httpx.delete(f"{url}/v1/models/omnivec-tiny", timeout=10), 409, "model_conflict", "default")


def test_collections_use_the_model_of_their_space_and_name_it_when_unloaded(two_models, tiny_b_bundle):
    url = two_models.url
    created = httpx.post(f"{url}/v1/collections", json={"name": "b_texts", "model": B}, timeout=30)
    assert created.status_code == 201, created.text
    space_b = created.json()["space_id"]
    assert space_b == next(m["space_id"] for m in _models(url)["data"] if m["name"] == B) and created.json()["model"] == B
    texts = ["a red square", "a blue circle", "a green triangle"]
    added = httpx.post(f"{url}/v1/collections/b_texts/items", json={"items": [{"text": t} for t in texts]}, timeout=60)
    assert added.status_code == 200 and added.json()["indexed"] == 3, added.text
    search = lambda: httpx.post(f"{url}/v1/collections/b_texts/search", json={"query": {"text": "a blue circle"}, "top_k": 1}, timeout=30)  # noqa: E731
    hit = search()
    assert hit.status_code == 200 and hit.json()["results"][0]["score"] > 0.999, hit.text  # embedded by tiny-b, not the default

    gone = httpx.delete(f"{url}/v1/models/{B}", timeout=60)
    assert gone.status_code == 200 and gone.json()["name"] == B, gone.text
    assert [m["name"] for m in _models(url)["data"]] == ["omnivec-tiny"]
    assert_error(search(), 409, "space_mismatch", B, "POST /v1/models")
    assert_error(_embed(url, ["x"], B), 404, "model_not_found")
    listed = httpx.get(f"{url}/v1/collections/b_texts", timeout=10).json()
    assert listed["matches_model"] is False and listed["count"] == 3

    loading = httpx.post(f"{url}/v1/models", json={"bundle": str(tiny_b_bundle), "name": B}, timeout=30)
    assert loading.status_code == 202 and loading.json()["state"] == "loading", loading.text
    assert _wait_ready(url, B)["state"] == "ready"
    assert search().json()["results"][0]["score"] > 0.999
    assert httpx.get(f"{url}/v1/collections/b_texts", timeout=10).json()["matches_model"] is True


def test_load_and_unload_under_concurrent_requests_drop_nothing(two_models, tiny_b_bundle):
    """Clients keep embedding with both models while B is unloaded and loaded again three times: every answer
    is 200, except the documented 404 model_not_found for requests naming B while it is away."""
    url = two_models.url
    stop = threading.Event()
    outcomes: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def client(model: str | None) -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                body = {"texts": ["a photo of a dog", "a red square"], **({"model": model} if model else {})}
                r = http.post(f"{url}/v1/embed", json=body)
                code = r.json()["error"]["code"] if r.status_code != 200 else ""
                with lock:
                    outcomes.append((model or "default", r.status_code, code))

    threads = [threading.Thread(target=client, args=(m,)) for m in (None, None, B, B)]
    for t in threads:
        t.start()
    try:
        def seen(status: int) -> int:
            with lock:
                return sum(o[0] == B and o[1] == status for o in outcomes)

        def until_more(status: int) -> None:  # progress made by the clients, not a fixed sleep (CI machines are slow at times)
            target, deadline = seen(status) + 1, time.monotonic() + 60
            while seen(status) < target:
                assert time.monotonic() < deadline, f"no {status} for {B} within 60 s"
                time.sleep(0.02)

        for _ in range(3):
            until_more(200)
            assert httpx.delete(f"{url}/v1/models/{B}", timeout=60).status_code == 200
            until_more(404)
            assert httpx.post(f"{url}/v1/models", json={"bundle": str(tiny_b_bundle), "name": B}, timeout=30).status_code == 202
            assert _wait_ready(url, B)["state"] == "ready"
        until_more(200)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    default = [o for o in outcomes if o[0] == "default"]
    named = [o for o in outcomes if o[0] == B]
    assert default and all(status == 200 for _, status, _ in default), [o for o in default if o[1] != 200][:5]
    assert all(status == 200 or (status, code) == (404, "model_not_found") for _, status, code in named), [o for o in named if o[1] != 200][:5]
    assert sum(status == 200 for _, status, _ in named) > 0 and sum(status == 404 for _, status, _ in named) > 0


def _archive(bundle, tmp_path, *, escape: bool = False) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(bundle, arcname="bundle")
        if escape:
            tar.add(bundle / "manifest.json", arcname="../outside.json")
    return buf.getvalue()


def test_admin_key_guards_loading_and_unloading(tiny_bundle, tiny_b_bundle, tmp_path):
    archive = _archive(tiny_b_bundle, tmp_path)
    env = {
        "OMNIVEC_DATA_DIR": str(tmp_path / "data"), "OMNIVEC_SERVER__API_KEYS": "user-key", "OMNIVEC_SERVER__ADMIN_KEYS": "admin-key",
        "OMNIVEC_LIMITS__MAX_BUNDLE_UPLOAD_BYTES": str(len(archive) + 4096),
    }  # fmt: skip
    with ServerProcess(tiny_bundle, log=tmp_path / "server.log", env=env) as proc:
        url, body = proc.url, {"bundle": str(tiny_b_bundle), "name": B}
        user, admin = {"Authorization": "Bearer user-key"}, {"X-API-Key": "admin-key"}
        assert_error(httpx.post(f"{url}/v1/models", json=body, timeout=10), 401, "unauthorized")
        assert_error(httpx.post(f"{url}/v1/models", json=body, headers=user, timeout=10), 403, "forbidden", "OMNIVEC_SERVER__ADMIN_KEYS")
        assert httpx.get(f"{url}/v1/models", headers=user, timeout=10).status_code == 200  # reading stays open to API keys
        assert httpx.post(f"{url}/v1/models", json=body, headers=admin, timeout=10).status_code == 202
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/v1/models/{B}", headers=admin, timeout=10).json()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_error(httpx.delete(f"{url}/v1/models/{B}", headers=user, timeout=10), 403, "forbidden")
        assert _embed_with(url, B, user).status_code == 200  # admin keys gate changes, not use
        assert httpx.delete(f"{url}/v1/models/{B}", headers=admin, timeout=60).status_code == 200

        # the same bundle as an uploaded archive: size-limited, unpacked under data_dir/models, loaded in the background
        upload = lambda body, headers=admin, kind="application/gzip": httpx.post(  # noqa: E731
            f"{url}/v1/models/upload", params={"name": "uploaded"}, content=body, headers={**headers, "content-type": kind}, timeout=60
        )
        assert_error(upload(archive, user), 403, "forbidden")
        assert_error(upload(archive + b"\0" * 8192), 413, "payload_too_large", "MAX_BUNDLE_UPLOAD_BYTES")
        assert_error(upload(b"not an archive"), 422, "invalid_bundle", "tar")
        assert_error(upload(_archive(tiny_b_bundle, tmp_path, escape=True)), 422, "invalid_bundle")
        assert not (tmp_path / "data" / "outside.json").exists()
        assert_error(upload(archive, kind="text/plain"), 415, "unsupported_media_type")
        for bad_name in ("../outside", ".hidden", "a/b"):  # the name becomes a directory under data_dir/models: never a path out of it
            refused = httpx.post(f"{url}/v1/models/upload", params={"name": bad_name}, content=archive, headers={**admin, "content-type": "application/gzip"}, timeout=60)
            assert_error(refused, 422, "invalid_request", "letters, digits")
        assert not (tmp_path / "data" / "outside").exists()
        accepted = upload(archive)
        assert accepted.status_code == 202 and accepted.json()["name"] == "uploaded", accepted.text
        deadline = time.monotonic() + 120
        while (info := httpx.get(f"{url}/v1/models/uploaded", headers=admin, timeout=10).json())["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert info["state"] == "ready" and info["bundle"] == str(tmp_path / "data" / "models" / "uploaded")
        assert _embed_with(url, "uploaded", user).status_code == 200


def _embed_with(url: str, model: str, headers: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/embed", json={"texts": ["x"], "model": model}, headers=headers, timeout=60)


def test_models_dir_and_repeated_bundle_flags(tiny_bundle, tiny_b_bundle, tmp_path):
    from omnivec.cli import build_settings
    from omnivec.parser import build_parser

    models = tmp_path / "models"
    models.mkdir()
    (models / "captions").symlink_to(tiny_b_bundle)
    (models / "default").symlink_to(tiny_bundle)  # the default's own directory is not served twice
    (models / "notes").mkdir()  # no manifest: not a bundle
    args = build_parser().parse_args(["serve", "--bundle", f"main={tiny_bundle}", "--bundle", str(tiny_b_bundle), "--models-dir", str(models)])
    settings = build_settings(args)
    assert settings.model.bundle == tiny_bundle and settings.model.name == "main"
    assert settings.model.extra_bundles() == [str(tiny_b_bundle), f"captions={models / 'captions'}"]
