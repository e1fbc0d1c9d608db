"""Re-embedding a collection into another model's space with a swap: two real bundles (omnivec-tiny, two seeds),
real engines (Edge and qdrant-client in memory), real HTTP, concurrent searches and adds during the swap,
and a restart in the middle of a job."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import pytest

from omnivec.server.api.app import create_app
from omnivec.server.settings import Settings
from tests.http_checks import assert_error
from tests.inprocess import InProcessServer
from tests.media import encode, scene

B = "tiny-b"
TEXTS = [f"item number {i}: a {c} {s}" for i, (c, s) in enumerate((c, s) for c in ("red", "green", "blue", "black", "white") for s in ("square", "circle", "cross", "star", "line", "dot"))]


def _settings(tmp_path, tiny_bundle, tiny_b_bundle, engine: str, page: int = 4) -> Settings:
    index = {"engine": "qdrant", "qdrant_url": ":memory:"} if engine == "qdrant" else {"engine": "edge"}
    return Settings(
        data_dir=tmp_path / "data",
        model={"bundle": tiny_bundle, "bundles": [f"{B}={tiny_b_bundle}"], "intra_op_threads": 1},
        index={**index, "reembed_page": page, "search_threads": 1},
        server={"preprocess_threads": 1},
    )


def _spaces(url: str) -> dict[str, str]:
    return {m["name"]: m["space_id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}


def _fill(url: str, name: str, texts: list[str], images: int = 0) -> None:
    assert httpx.post(f"{url}/v1/collections", json={"name": name, "payload_indexes": {"n": "integer"}}, timeout=30).status_code == 201
    items = [{"id": f"t{i}", "text": t, "payload": {"n": i}} for i, t in enumerate(texts)]
    items += [{"id": f"img{i}", "image": base64.b64encode(encode(scene(seed=i), "PNG")).decode(), "payload": {"n": -i}} for i in range(images)]
    for start in range(0, len(items), 32):
        r = httpx.post(f"{url}/v1/collections/{name}/items", json={"items": items[start : start + 32]}, timeout=120)
        assert r.status_code == 200 and r.json()["errors"] == [], r.text


def _until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the concurrent clients made no progress"
        time.sleep(0.02)


def _wait(url: str, name: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/collections/{name}/reembed", timeout=10).json()
        if status["state"] != "running":
            return status
        time.sleep(0.05)
    raise TimeoutError(f"re-embed of {name} not done in {timeout}s")


@pytest.mark.parametrize("engine", ["edge", "qdrant"])
def test_reembed_swaps_under_concurrent_searches_and_adds(engine, tmp_path, tiny_bundle, tiny_b_bundle):
    app = create_app(_settings(tmp_path, tiny_bundle, tiny_b_bundle, engine))
    with InProcessServer(app) as server:
        url = server.url
        spaces = _spaces(url)
        _fill(url, "docs", TEXTS, images=4)
        before = httpx.get(f"{url}/v1/collections/docs", timeout=10).json()
        assert before["space_id"] == spaces["omnivec-tiny"] and before["count"] == len(TEXTS) + 4

        stop = threading.Event()
        searches: list[tuple[int, str | None, float]] = []
        added: list[str] = []
        failures: list[str] = []

        def searcher(k: int) -> None:
            with httpx.Client(timeout=60) as http:
                i = k
                while not stop.is_set():
                    text = TEXTS[i % len(TEXTS)]
                    r = http.post(f"{url}/v1/collections/docs/search", json={"query": {"text": text}, "top_k": 1})
                    top = r.json()["results"][0] if r.status_code == 200 else {}
                    searches.append((r.status_code, top.get("id"), top.get("score", 0.0)))
                    if r.status_code != 200:
                        failures.append(r.text)
                    i += 3

        def adder() -> None:
            with httpx.Client(timeout=60) as http:
                n = 0
                while not stop.is_set():
                    r = http.post(f"{url}/v1/collections/docs/items", json={"items": [{"id": f"late{n}", "text": f"added during the swap, number {n}"}]})
                    if r.status_code == 200:
                        added.append(f"late{n}")
                    else:
                        failures.append(r.text)
                    n += 1
                    time.sleep(0.02)

        threads = [threading.Thread(target=searcher, args=(k,)) for k in range(2)] + [threading.Thread(target=adder)]
        for t in threads:
            t.start()
        try:
            _until(lambda: len(added) >= 1 and len(searches) >= 2)  # load already running (not a fixed sleep: CI machines are slow at times)
            started = httpx.post(f"{url}/v1/collections/docs/reembed", json={"model": B}, timeout=30)
            assert started.status_code == 202, started.text
            assert started.json()["state"] == "running" and started.json()["building"] == "docs.r1"
            assert_error(httpx.delete(f"{url}/v1/models/{B}", timeout=30), 409, "model_conflict", "re-embedding")
            assert_error(httpx.post(f"{url}/v1/collections/docs/reembed", json={"model": B}, timeout=30), 409, "reembed_conflict")
            status = _wait(url, "docs")
            at_swap = len(added), len(searches)
            _until(lambda: len(added) > at_swap[0] + 1 and len(searches) > at_swap[1] + 2)  # searches and adds go on after the swap too
        finally:
            stop.set()
            for t in threads:
                t.join(60)

        assert status["state"] == "done" and status["errors"] == [], status
        assert not failures, failures[:3]
        # every search answered, and the query text found itself at cosine 1: query and collection in one space
        assert len(searches) > 10 and all(code == 200 for code, _, _ in searches)
        assert all(score > 0.999 for _, _, score in searches), [s for s in searches if s[2] <= 0.999][:5]

        after = httpx.get(f"{url}/v1/collections/docs", timeout=10).json()
        assert after["space_id"] == spaces[B] and after["model"] == B
        assert after["count"] == len(TEXTS) + 4 + len(added)  # nothing lost: every add before, during and after the swap
        old = httpx.get(f"{url}/v1/collections/docs.r0", timeout=10).json()  # the old one stays until deleted
        assert old["space_id"] == spaces["omnivec-tiny"] and old["count"] == status["total"]  # equal at the swap; later adds go to the new one
        assert len(TEXTS) + 4 < status["total"] < after["count"]  # adds landed during the rebuild and after it
        names = [c["name"] for c in httpx.get(f"{url}/v1/collections", timeout=10).json()["data"]]
        assert names == ["docs", "docs.r0"]

        # items added during the rebuild were embedded by the new model into the new collection
        late = httpx.post(f"{url}/v1/collections/docs/search", json={"query": {"text": "added during the swap, number 0"}, "top_k": 1}, timeout=30)
        assert late.json()["results"][0]["id"] == "late0" and late.json()["results"][0]["score"] > 0.999
        image = httpx.get(f"{url}/v1/collections/docs/items/img1", params={"with_vector": "true"}, timeout=10).json()
        by_image = httpx.post(f"{url}/v1/collections/docs/search", json={"query": {"vector": image["vector"]}, "top_k": 1}, timeout=30).json()
        assert by_image["results"][0]["id"] == "img1" and image["payload"] == {"n": -1}

        filtered = httpx.post(f"{url}/v1/collections/docs/search", json={"query": {"text": TEXTS[3]}, "top_k": 3, "filter": {"must": [{"key": "n", "range": {"lte": 3, "gte": 3}}]}}, timeout=30)
        assert [h["id"] for h in filtered.json()["results"]] == ["t3"], filtered.text
        assert app.state.store.describe("docs").extra["payload_indexes"] == {"modality": "keyword", "n": "integer"}  # the new collection's indexes

        assert httpx.delete(f"{url}/v1/collections/docs.r0", timeout=30).status_code == 200
        assert httpx.get(f"{url}/v1/collections/docs", timeout=10).json()["count"] == after["count"]


def test_reembed_resumes_after_a_restart(tmp_path, tiny_bundle, tiny_b_bundle):
    texts = [f"{t}, copy {k}" for k in range(5) for t in TEXTS]  # 150 items, 2 per page: the job is cut short mid-way
    settings = _settings(tmp_path, tiny_bundle, tiny_b_bundle, "edge", page=2)
    with InProcessServer(create_app(settings)) as server:
        _fill(server.url, "many", texts)
        assert httpx.post(f"{server.url}/v1/collections/many/reembed", json={"model": B}, timeout=30).status_code == 202
        while (cut := httpx.get(f"{server.url}/v1/collections/many/reembed", timeout=10).json())["done"] < 10:
            time.sleep(0.01)
        assert cut["state"] == "running" and cut["done"] < len(texts)  # the shutdown interrupts it
    with InProcessServer(create_app(settings)) as server:  # same data dir: a restart
        url = server.url
        carried_on = httpx.get(f"{url}/v1/collections/many/reembed", timeout=10).json()
        assert carried_on["done"] >= cut["done"]  # from its saved page, not from the start
        status = _wait(url, "many")
        assert status["state"] == "done" and status["errors"] == [] and status["total"] == len(texts)
        info = httpx.get(f"{url}/v1/collections/many", timeout=10).json()
        assert info["space_id"] == _spaces(url)[B] and info["count"] == len(texts)
        hit = httpx.post(f"{url}/v1/collections/many/search", json={"query": {"text": texts[-1]}, "top_k": 1}, timeout=30).json()
        assert hit["results"][0]["score"] > 0.999


def test_reembed_refusals(tmp_path, tiny_bundle, tiny_b_bundle):
    with InProcessServer(create_app(_settings(tmp_path, tiny_bundle, tiny_b_bundle, "edge"))) as server:
        url = server.url
        _fill(url, "small", TEXTS[:3])
        assert_error(httpx.get(f"{url}/v1/collections/small/reembed", timeout=10), 404, "not_found", "POST")
        assert_error(httpx.post(f"{url}/v1/collections/small/reembed", json={"model": "nope"}, timeout=10), 404, "model_not_found", B)
        assert_error(httpx.post(f"{url}/v1/collections/small/reembed", json={"model": "omnivec-tiny"}, timeout=10), 409, "reembed_conflict", "already")
        assert_error(httpx.post(f"{url}/v1/collections/nope/reembed", json={"model": B}, timeout=10), 404, "collection_not_found")


def test_sdk_loads_unloads_and_reembeds_with_progress(tmp_path, tiny_bundle, tiny_b_bundle):
    from omnivec_client import Client, OmnivecError

    with InProcessServer(create_app(_settings(tmp_path, tiny_bundle, tiny_b_bundle, "qdrant"))) as server, Client(server.url) as client:
        _fill(server.url, "notes", TEXTS[:12])
        assert client.unload_model(B)["name"] == B
        assert [m["name"] for m in client.models()] == ["omnivec-tiny"]
        loading: list[dict] = []
        info = client.load_model(str(tiny_b_bundle), B, on_progress=loading.append)
        assert info["state"] == "ready" and loading and loading[-1]["state"] == "ready"
        seen: list[tuple[int, int]] = []
        status = client.reembed("notes", B, interval_s=0.05, on_progress=lambda s: seen.append((s["done"], s["total"])))
        assert status["state"] == "done" and status["total"] == 12 and status["errors"] == [] and seen[-1] == (12, 12)
        assert client.get_collection("notes").count == 12
        by_b, by_default = client.embed(["a red square"], model=B), client.embed(["a red square"])
        assert by_b.space_id == status["space_id"] and by_default.space_id != by_b.space_id
        assert client.classify(["a cat"], labels=["cat", "dog"], model=B)[0].labels[0].label in ("cat", "dog")
        with pytest.raises(OmnivecError) as refused:
            client.unload_model("omnivec-tiny")
        assert refused.value.code == "model_conflict"
        with pytest.raises(OmnivecError) as bad:
            client.load_model(str(tmp_path / "missing"))
        assert bad.value.code == "invalid_bundle"
        made_in_b = client.create_collection("b-notes", model=B)  # a collection in the second model's space, named by the SDK
        assert made_in_b.space_id == status["space_id"]


def test_reembed_keeps_the_collections_vector_options(tmp_path, tiny_bundle, tiny_b_bundle):
    """A quantised collection of a prefix length stays one after the swap: same options, same prefix, new space."""
    with InProcessServer(create_app(_settings(tmp_path, tiny_bundle, tiny_b_bundle, "edge"))) as server:
        url = server.url
        dim = next(m["dim"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"] if m["name"] == B)
        body = {"name": "short", "quantization": "int8", "oversampling": 3, "dimensions": dim // 2, "hnsw": {"m": 8}}
        created = httpx.post(f"{url}/v1/collections", json=body, timeout=30)
        assert created.status_code == 201, created.text
        items = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS[:10])]
        assert httpx.post(f"{url}/v1/collections/short/items", json={"items": items}, timeout=60).json()["errors"] == []
        assert httpx.post(f"{url}/v1/collections/short/reembed", json={"model": B}, timeout=30).status_code == 202
        status = _wait(url, "short")
        assert status["state"] == "done" and status["errors"] == [], status
        after = httpx.get(f"{url}/v1/collections/short", timeout=10).json()
        assert after["space_id"] == _spaces(url)[B] and after["count"] == 10 and after["dim"] == dim // 2
        assert after["vectors"] == created.json()["vectors"]
        stored = httpx.get(f"{url}/v1/collections/short/items/t3", params={"with_vector": "true"}, timeout=10).json()
        assert len(stored["vector"]) == dim // 2
        hits = httpx.post(f"{url}/v1/collections/short/search", json={"query": {"text": TEXTS[3]}, "top_k": 3}, timeout=30).json()["results"]
        assert hits[0]["id"] == "t3"


@pytest.mark.parametrize("engine", ["edge", "qdrant"])
def test_reembed_into_another_architecture_with_another_dim(engine, tmp_path, tiny_bundle, mini_text_bundle):
    """omnivec-tiny (image + text) -> omnivec-mini's text tower alone (MiniLM, another dim): texts move, and an
    image the new model cannot embed is listed in `errors` with its id while everything else is swapped in."""
    index = {"engine": "qdrant", "qdrant_url": ":memory:"} if engine == "qdrant" else {"engine": "edge"}
    settings = Settings(
        data_dir=tmp_path / "data",
        model={"bundle": tiny_bundle, "bundles": [f"minitext={mini_text_bundle}"], "intra_op_threads": 1},
        index={**index, "reembed_page": 8, "search_threads": 1},
        server={"preprocess_threads": 1},
    )
    with InProcessServer(create_app(settings)) as server:
        url = server.url
        models = {m["name"]: m for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
        assert models["minitext"]["dim"] != models["omnivec-tiny"]["dim"]
        _fill(url, "mixed", TEXTS[:20], images=1)
        assert httpx.post(f"{url}/v1/collections/mixed/reembed", json={"model": "minitext"}, timeout=30).status_code == 202
        status = _wait(url, "mixed", timeout=300)
        assert status["state"] == "done", status
        assert [e["id"] for e in status["errors"]] == ["img0"] and status["errors"][0]["code"] == "modality_not_served", status["errors"]
        assert "minitext" in status["errors"][0]["message"]  # the name clients use, not the manifest's
        after = httpx.get(f"{url}/v1/collections/mixed", timeout=10).json()
        assert after["space_id"] == models["minitext"]["space_id"] and after["dim"] == models["minitext"]["dim"]
        assert after["count"] == 20  # the item the new model cannot embed is not in the new space (it is listed above)
        hits = httpx.post(f"{url}/v1/collections/mixed/search", json={"query": {"text": TEXTS[7]}, "top_k": 1}, timeout=60).json()["results"]
        assert hits[0]["id"] == "t7" and hits[0]["score"] > 0.999
        old = httpx.get(f"{url}/v1/collections/mixed.r0", timeout=10).json()
        assert old["count"] == 21 and old["space_id"] == models["omnivec-tiny"]["space_id"]
