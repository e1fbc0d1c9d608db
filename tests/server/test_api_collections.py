"""Collections, items and search through real HTTP, against both index engines.

Each engine gets one in-process uvicorn server on 127.0.0.1 around `create_app`: Edge opened by
the app's lifespan on a tmp data dir, and qdrant-client's `:memory:` store injected with
`create_app(store=...)`. URL inputs are served by a local HTTP server that the app's fetch
allowlist permits (127.0.0.1/32 only).
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from omnivec.server.api.app import create_app
from tests.inprocess import InProcessServer, engine_server, one_thread_settings
from tests.media import encode, scene
from tests.media_server import MediaServer
from tests.http_checks import assert_error

DIM = 64
IMAGES = {f"s{i}.png": encode(scene(48 + 4 * i, 40 + 3 * i, seed=10 + i), "PNG") for i in range(6)}
TEXTS = ["a red disk on a gradient", "a blue square", "a quiet river at dawn", "mountain road", "city lights", "a small boat"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def media():
    with MediaServer(IMAGES, big_bytes=600_000, stall_s=3.0) as srv:
        yield srv


@pytest.fixture(scope="module", params=["edge", "qdrant"])
def api(request, tiny_bundle, tmp_path_factory, media):
    settings = one_thread_settings(tmp_path_factory.mktemp(f"data-{request.param}"), tiny_bundle)
    settings.fetch.allow_private = ["127.0.0.1/32"]
    settings.fetch.read_timeout_s = 0.5
    settings.fetch.max_bytes = 500_000
    with engine_server(request.param, settings) as srv:
        yield srv


@pytest.fixture
def client(api) -> httpx.Client:
    return api.client


@pytest.fixture
def coll(client) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    r = client.post("/v1/collections", json={"name": name, "payload_indexes": {"kind": "keyword"}})
    assert r.status_code == 201, r.text
    yield name
    client.delete(f"/v1/collections/{name}")


@pytest.fixture(autouse=True)
def _server_stays_healthy(api):
    yield
    assert api.client.get("/healthz").status_code == 200
    assert api.client.post("/v1/embed", json={"texts": ["still alive"]}).status_code == 200, "the server must keep serving"


def _index(client, name, items) -> dict:
    r = client.post(f"/v1/collections/{name}/items", json={"items": items})
    assert r.status_code == 200, r.text
    return r.json()


def _fill(client, name) -> dict[str, str]:
    """Six images and six texts; returns {image name or text: id}."""
    items = [{"image": _b64(data), "payload": {"kind": "img", "n": i, "name": n}} for i, (n, data) in enumerate(IMAGES.items())]
    items += [{"text": t, "payload": {"kind": "txt", "n": i, "tags": ["even" if i % 2 == 0 else "odd"]}} for i, t in enumerate(TEXTS)]
    body = _index(client, name, items)
    assert body["errors"] == [] and body["indexed"] == 12
    return dict(zip([*IMAGES, *TEXTS], body["ids"]))


def _search(client, name, **body) -> list[dict]:
    r = client.post(f"/v1/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


# --- collections ------------------------------------------------------------------------------


def test_collection_lifecycle(client, api):
    name = f"life-{api.engine}"
    r = client.post("/v1/collections", json={"name": name, "description": "holiday photos", "extra": {"owner": "ana"}})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["dim"] == DIM and info["model"] == "omnivec-tiny" and info["space_id"].startswith("omnivec-tiny@")
    assert (info["count"], info["description"], info["extra"], info["matches_model"]) == (0, "holiday photos", {"owner": "ana"}, True)
    assert_error(client.post("/v1/collections", json={"name": name}), 409, "collection_exists", name)
    assert client.get(f"/v1/collections/{name}").json()["description"] == "holiday photos"
    assert name in [c["name"] for c in client.get("/v1/collections").json()["data"]]
    assert client.delete(f"/v1/collections/{name}").json() == {"name": name, "deleted": True}
    assert_error(client.get(f"/v1/collections/{name}"), 404, "collection_not_found", name, "POST /v1/collections")
    assert_error(client.delete(f"/v1/collections/{name}"), 404, "collection_not_found")
    assert_error(client.post("/v1/collections", json={"name": "../etc"}), 422, "invalid_request", "collection name")


# --- indexing and search ----------------------------------------------------------------------


def test_cross_modal_search_by_text_image_id_and_vector(client, coll):
    ids = _fill(client, coll)
    assert client.get(f"/v1/collections/{coll}").json()["count"] == 12

    # text -> image: only images come back, best first
    hits = _search(client, coll, query={"text": "a red disk"}, modality="image", top_k=4)
    assert len(hits) == 4 and {h["modality"] for h in hits} == {"image"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["payload"]["kind"] == "img" for h in hits)

    # image -> image: the same picture is its own nearest neighbour
    hits = _search(client, coll, query={"image": _b64(IMAGES["s3.png"])}, top_k=3)
    assert hits[0]["id"] == ids["s3.png"] and hits[0]["score"] > 0.999

    # text -> text with the exact text
    assert _search(client, coll, query={"text": TEXTS[2]}, top_k=1)[0]["id"] == ids[TEXTS[2]]

    # by stored id: "more like this", the item itself left out
    by_id = _search(client, coll, query={"id": ids["s1.png"]}, top_k=11)
    assert len(by_id) == 11 and ids["s1.png"] not in [h["id"] for h in by_id]

    # by raw vector: the item's own vector finds it first
    item = client.get(f"/v1/collections/{coll}/items/{ids['s1.png']}", params={"with_vector": "true"}).json()
    assert item["modality"] == "image" and item["payload"]["name"] == "s1.png" and len(item["vector"]) == DIM
    hits = _search(client, coll, query={"vector": item["vector"]}, top_k=2)
    assert hits[0]["id"] == ids["s1.png"] and hits[0]["score"] > 0.999
    # item-id search equals vector search minus the item
    assert [h["id"] for h in by_id[:5]] == [h["id"] for h in _search(client, coll, query={"vector": item["vector"]}, top_k=6)[1:]]


def test_filters_pagination_and_threshold(client, coll):
    _fill(client, coll)
    q = {"query": {"text": "a blue square"}}
    evens = _search(client, coll, **q, top_k=12, filter={"must": [{"key": "tags", "match": {"value": "even"}}]})
    assert len(evens) == 3 and all(h["payload"]["tags"] == ["even"] for h in evens)
    ranged = _search(client, coll, **q, top_k=12, modality="image", filter={"must": [{"key": "n", "range": {"gte": 2, "lt": 5}}]})
    assert sorted(h["payload"]["n"] for h in ranged) == [2, 3, 4] and {h["modality"] for h in ranged} == {"image"}
    texts = _search(client, coll, **q, top_k=12, filter={"must": [{"key": "modality", "match": {"value": "text"}}]})
    assert len(texts) == 6 and {h["modality"] for h in texts} == {"text"}

    full = _search(client, coll, **q, top_k=9)
    pages = [_search(client, coll, **q, top_k=3, offset=o) for o in (0, 3, 6)]
    assert [h["id"] for page in pages for h in page] == [h["id"] for h in full]

    threshold = (full[4]["score"] + full[5]["score"]) / 2
    kept = _search(client, coll, **q, top_k=12, score_threshold=threshold)
    assert [h["id"] for h in kept] == [h["id"] for h in full[:5]]

    bare = _search(client, coll, **q, top_k=2, with_payload=False)
    assert all(h["payload"] is None and h["modality"] in ("text", "image") for h in bare)


def test_reindexing_the_same_content_is_idempotent(client, coll):
    first = _index(client, coll, [{"text": "same words"}, {"image": _b64(IMAGES["s0.png"])}])
    again = _index(client, coll, [{"image": _b64(IMAGES["s0.png"]), "payload": {"v": 2}}, {"text": "same words"}])
    assert again["ids"] == first["ids"][::-1] and len(first["ids"][0]) == 64
    assert client.get(f"/v1/collections/{coll}").json()["count"] == 2
    assert client.get(f"/v1/collections/{coll}/items/{first['ids'][1]}").json()["payload"] == {"v": 2}, "upsert replaces"
    mine = _index(client, coll, [{"id": "my/id 1", "text": "same words"}])
    assert mine["ids"] == ["my/id 1"] and client.get(f"/v1/collections/{coll}").json()["count"] == 3
    assert client.get(f"/v1/collections/{coll}/items/my/id 1").json()["modality"] == "text"
    r = client.post(f"/v1/collections/{coll}/items/exists", json={"ids": ["my/id 1", "nope", first["ids"][0]]})
    assert r.json() == {"existing": ["my/id 1", first["ids"][0]]}


def test_delete_by_ids_and_by_filter(client, coll):
    ids = _fill(client, coll)
    r = client.request("DELETE", f"/v1/collections/{coll}/items", json={"ids": [ids["s0.png"], ids["s1.png"], "not-there"]})
    assert r.status_code == 200 and r.json() == {"deleted": 2}
    assert_error(client.get(f"/v1/collections/{coll}/items/{ids['s0.png']}"), 404, "item_not_found", ids["s0.png"])
    r = client.post(f"/v1/collections/{coll}/items/delete", json={"filter": {"must": [{"key": "modality", "match": {"value": "text"}}]}})
    assert r.json() == {"deleted": 6}
    assert client.get(f"/v1/collections/{coll}").json()["count"] == 4
    assert_error(client.request("DELETE", f"/v1/collections/{coll}/items", json={}), 422, "invalid_request", "ids")
    assert_error(
        client.request("DELETE", f"/v1/collections/{coll}/items", json={"filter": {"must": [{"key": "n", "match": {"value": 1.5}}]}}),
        422,
        "invalid_filter",
        "range",
    )


def test_multipart_items_and_image_query(client, coll):
    files = [("images", (n, IMAGES[n], "image/png")) for n in ("s2.png", "s4.png")] + [("images", ("notes.txt", b"hello", "text/plain"))]
    data = {"items": json.dumps([{"id": "two", "payload": {"kind": "mine"}}, {}, {}]), "payload": json.dumps({"album": "trip"})}
    r = client.post(f"/v1/collections/{coll}/items", files=files, data=data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ids"][0] == "two" and len(body["ids"][1]) == 64 and body["ids"][2] is None
    assert body["errors"] == [{"index": 2, "code": "unsupported_media_type", "message": body["errors"][0]["message"]}]
    assert "notes.txt" in body["errors"][0]["message"]
    assert client.get(f"/v1/collections/{coll}/items/two").json()["payload"] == {"album": "trip", "kind": "mine"}
    # the same bytes through JSON get the same content id as the upload
    assert _index(client, coll, [{"image": _b64(IMAGES["s4.png"])}])["ids"] == [body["ids"][1]]

    r = client.post(f"/v1/collections/{coll}/search", files={"image": ("q.png", IMAGES["s2.png"], "image/png")}, data={"params": json.dumps({"top_k": 1})})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"] == "two"
    r = client.post(f"/v1/collections/{coll}/items", files=files[:2], data={"items": json.dumps([{}])})
    assert_error(r, 422, "invalid_request", "1 entries for 2 files")


def test_per_item_errors_do_not_fail_the_batch(client, coll, media):
    items = [
        {"text": "fine text"},
        {"url": f"{media.url}/img/s5.png", "payload": {"from": "url"}},
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"url": f"{media.url}/slow"},
        {"url": f"{media.url}/big"},
        {"url": f"{media.url}/html"},
        {"image": "%%%"},
        {"image": _b64(b"not an image")},
        {"text": "x", "payload": {"modality": "image"}},
        {"text": "y", "video": "z"},
        {"image": _b64(IMAGES["s0.png"])},
    ]
    body = _index(client, coll, items)
    codes = {e["index"]: e["code"] for e in body["errors"]}
    assert codes == {
        2: "url_blocked",
        3: "url_timeout",
        4: "download_too_large",
        5: "unsupported_media_type",
        6: "invalid_base64",
        7: "invalid_image",
        8: "invalid_request",
        9: "unknown_field",
    }
    messages = {e["index"]: e["message"] for e in body["errors"]}
    assert "169.254.169.254" in messages[2] and f"{media.url}/slow" in messages[3] and "500000" in messages[4]
    assert [i is not None for i in body["ids"]] == [True, True] + [False] * 8 + [True] and body["indexed"] == 3
    url_item = client.get(f"/v1/collections/{coll}/items/{body['ids'][1]}").json()
    assert url_item == {"id": body["ids"][1], "modality": "image", "payload": {"from": "url"}, "vector": None}
    hits = _search(client, coll, query={"url": f"{media.url}/img/s5.png"}, top_k=1)
    assert hits[0]["id"] == body["ids"][1] and hits[0]["score"] > 0.999


# --- request-level errors ---------------------------------------------------------------------


def test_unknown_collection_everywhere(client):
    for r in (
        client.post("/v1/collections/ghost/items", json={"items": [{"text": "a"}]}),
        client.post("/v1/collections/ghost/search", json={"query": {"text": "a"}}),
        client.post("/v1/collections/ghost/search", json={"query": {"vector": [0.1] * DIM}}),
        client.get("/v1/collections/ghost/items/x"),
        client.request("DELETE", "/v1/collections/ghost/items", json={"ids": ["x"]}),
    ):
        assert_error(r, 404, "collection_not_found", "ghost")


def test_bad_search_requests(client, coll, media):
    _fill(client, coll)
    url = f"/v1/collections/{coll}/search"
    assert_error(client.post(url, json={"query": {"vector": [0.1, 0.2, 0.3]}}), 422, "dimension_mismatch", "64", "3 dimensions")
    assert_error(client.post(url, json={"query": {"text": "a"}, "filter": {"must": [{"key": "x", "match": {"bogus": 1}}]}}), 422, "invalid_filter", "bogus")
    assert_error(client.post(url, json={"query": {"text": "a"}, "filter": {"shoulder": []}}), 422, "invalid_filter", "shoulder")
    assert_error(client.post(url, json={"query": {"text": "a", "id": "b"}}), 422, "invalid_request", "exactly one")
    assert_error(client.post(url, json={"top_k": 3}), 422, "invalid_request", "query")
    assert_error(client.post(url, json={"query": {"text": "a"}, "top_k": 0}), 422, "invalid_request", "top_k")
    assert_error(client.post(url, json={"query": {"id": "missing"}}), 404, "item_not_found", "missing")
    assert_error(client.post(url, json={"query": {"url": "http://10.0.0.1/a.png"}}), 422, "url_blocked", "http://10.0.0.1/a.png", "private")
    assert_error(client.post(url, json={"query": {"url": f"{media.url}/missing"}}), 422, "url_fetch_failed", "404")
    assert_error(client.post(url, content=b"q", headers={"content-type": "text/plain"}), 415, "unsupported_media_type")


def test_bad_item_requests(client, coll):
    url = f"/v1/collections/{coll}/items"
    assert_error(client.post(url, json={"items": []}), 400, "empty_request")
    assert_error(client.post(url, json={"items": "a"}), 422, "invalid_request", "list")
    assert_error(client.post(url, json={"items": [], "extra": 1}), 422, "unknown_field", "extra")
    assert_error(client.post(url, content=b"{", headers={"content-type": "application/json"}), 422, "invalid_request", "JSON")


def test_openapi_documents_the_new_routes(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/collections", "/v1/collections/{name}/items", "/v1/collections/{name}/search", "/v1/classify", "/v1/labelsets/{name}"):
        assert path in spec["paths"], path
    for model in ("AddItemsRequest", "SearchRequest", "ClassifyRequest", "ItemIn", "SearchQueryIn"):
        assert model in spec["components"]["schemas"], model
    items_body = spec["paths"]["/v1/collections/{name}/items"]["post"]["requestBody"]["content"]
    assert set(items_body) == {"application/json", "multipart/form-data"}


def test_label_sets_live_with_the_index(api, client, tiny_bundle, tmp_path):
    """Edge: files in the data dir. Qdrant: a hidden Qdrant collection, so a second server on the
    same Qdrant (another replica) classifies with a set the first one stored."""
    r = client.put("/v1/labelsets/shared-scenes", json={"labels": ["a quiet river", "city lights"]})
    assert r.status_code == 200, r.text
    assert "_omnivec_labelsets" not in [c["name"] for c in client.get("/v1/collections").json()["data"]]
    stored_as_file = (api.settings.data_dir / "labelsets" / "shared-scenes.json").is_file()
    assert stored_as_file == (api.engine == "edge")
    if api.engine == "edge":
        assert client.delete("/v1/labelsets/shared-scenes").status_code == 200
        return
    settings = one_thread_settings(tmp_path / "replica-data", tiny_bundle)
    with InProcessServer(create_app(settings, store=api.store)) as replica:
        body = {"inputs": [{"text": "city lights"}], "labelset": "shared-scenes"}
        answer = httpx.post(f"{replica.url}/v1/classify", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["labels"][0]["label"] == "city lights"
        assert httpx.delete(f"{replica.url}/v1/labelsets/shared-scenes", timeout=30).status_code == 200
    assert not (tmp_path / "replica-data" / "labelsets").exists()
    assert_error(client.get("/v1/labelsets/shared-scenes"), 404, "labelset_not_found")


def test_scroll_pages_through_items_with_filters(client, coll):
    items = [{"text": t, "payload": {"kind": "note"}} for t in TEXTS] + [{"image": _b64(b), "payload": {"kind": "pic"}} for b in list(IMAGES.values())[:3]]
    ids = client.post(f"/v1/collections/{coll}/items", json={"items": items}).json()["ids"]
    seen, cursor = [], None
    while True:
        page = client.post(f"/v1/collections/{coll}/items/scroll", json={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 4
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(i["id"] for i in seen) == sorted(ids)
    pics = client.post(f"/v1/collections/{coll}/items/scroll", json={"modality": "image", "with_vectors": True}).json()["items"]
    assert len(pics) == 3 and all(i["modality"] == "image" and i["payload"] == {"kind": "pic"} and len(i["vector"]) == DIM for i in pics)
    notes = client.post(f"/v1/collections/{coll}/items/scroll", json={"filter": {"must": [{"key": "kind", "match": {"value": "note"}}]}}).json()
    assert len(notes["items"]) == len(TEXTS) and notes["next_cursor"] is None
    assert_error(client.post(f"/v1/collections/{coll}/items/scroll", json={"cursor": "bogus"}), 422, "invalid_request", "next_cursor")
    assert_error(client.post(f"/v1/collections/{coll}/items/scroll", json={"limit": 0}), 422, "invalid_request")
    assert_error(client.post("/v1/collections/nope/items/scroll", json={}), 404, "collection_not_found")
