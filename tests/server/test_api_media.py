"""Kept media through the real server: what each kind of item keeps, the media route's answers and
headers, the per-collection switch, and that deleting items or collections deletes their media —
on the Edge engine (files under the data dir) and on the qdrant engine (a hidden collection)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import sqlite3

import httpx
import pytest
import soundfile as sf
from PIL import Image

from omnivec.server.api.app import create_app
from omnivec.server.settings import Settings
from omnivec.server_process import ServerProcess
from tests.inprocess import InProcessServer
from tests.media import encode, encode_audio, scene, tone
from tests.media_server import MediaServer
from tests.server.test_media_stores import write_legacy_media
from tests.server.test_previews import noisy

ORIGINAL_MAX = 200_000
JPEG = encode(scene(640, 480, seed=3), "JPEG", quality=90)
BIG_PNG = encode(noisy(400, 400), "PNG")  # about 480 kB: over the original bound, so only its thumbnail is kept
WAV = encode_audio(tone(523.0, 2.0, 16000), 16000)


@pytest.fixture(scope="module")
def media_server(tiny_audio_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media-server")
    env = {
        "OMNIVEC_DATA_DIR": str(tmp / "data"),
        "OMNIVEC_MEDIA__ORIGINAL_MAX_BYTES": str(ORIGINAL_MAX),
        "OMNIVEC_MEDIA__AUDIO_PREVIEW_S": "1.5",
        "OMNIVEC_FETCH__ALLOW_PRIVATE": '["127.0.0.1/32"]',
    }
    proc = ServerProcess(tiny_audio_bundle, log=tmp / "server.log", env=env).start()
    proc.data_dir = tmp / "data"
    yield proc
    proc.stop()


def _create(server, name: str, **extra) -> None:
    r = httpx.post(f"{server.url}/v1/collections", json={"name": name, **extra})
    assert r.status_code == 201, r.text


def _media(server, collection: str, item_id: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/collections/{collection}/media/{item_id}", params=params)


def _kept_files(server, collection: str) -> int:
    """Items with kept media, read from the collection's database beside the running server (WAL: no lock needed)."""
    path = server.data_dir / "kept_media" / f"{collection}.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT count(*) FROM media").fetchone()[0]


def test_each_kind_of_item_keeps_its_media_and_the_route_serves_it(media_server):
    _create(media_server, "kept")
    files = [("files", ("photo.jpg", JPEG, "image/jpeg")), ("files", ("big.png", BIG_PNG, "image/png"))]
    r = httpx.post(f"{media_server.url}/v1/collections/kept/items", files=files, data={"items": '[{"id": "photo"}, {"id": "big/one"}]'})
    assert r.status_code == 200 and r.json()["indexed"] == 2, r.text
    with MediaServer({"remote.png": encode(scene(seed=9), "PNG")}) as remote:
        url = f"{remote.url}/img/remote.png"
        items = [{"id": "tone", "audio": base64.b64encode(WAV).decode()}, {"id": "note", "text": "a red circle ü"}, {"id": "remote", "url": url}]
        assert httpx.post(f"{media_server.url}/v1/collections/kept/items", json={"items": items}).json()["indexed"] == 3

    thumb = _media(media_server, "kept", "photo")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["cache-control"] == "private, max-age=300" and thumb.headers["x-content-type-options"] == "nosniff"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 256 and len(thumb.content) <= 48 * 1024
    again = httpx.get(str(thumb.url), headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    original = _media(media_server, "kept", "photo", original="true")
    assert original.content == JPEG and original.headers["content-type"] == "image/jpeg"
    assert original.headers["etag"] != thumb.headers["etag"]

    big = _media(media_server, "kept", "big/one")  # an id with a slash: the rest of the path
    assert big.status_code == 200 and max(Image.open(io.BytesIO(big.content)).size) <= 256
    no_original = _media(media_server, "kept", "big/one", original="true").json()["error"]
    assert no_original["code"] == "media_not_found" and "original_max_bytes" in no_original["message"]

    sound = _media(media_server, "kept", "tone")
    assert sound.headers["content-type"] == "audio/ogg"
    samples, rate = sf.read(io.BytesIO(sound.content))
    assert abs(len(samples) / rate - 1.5) < 0.05  # the configured preview length of a 2 s recording
    assert _media(media_server, "kept", "tone", original="true").content == WAV

    text = _media(media_server, "kept", "note")
    assert text.headers["content-type"] == "text/plain; charset=utf-8" and text.text == "a red circle ü"

    redirect = _media(media_server, "kept", "remote")
    assert redirect.status_code == 307 and redirect.headers["location"] == url
    assert _media(media_server, "kept", "remote", redirect="false").json() == {"id": "remote", "modality": "image", "url": url}

    assert _media(media_server, "kept", "nope").json()["error"]["code"] == "item_not_found"
    assert _media(media_server, "missing", "photo").json()["error"]["code"] == "collection_not_found"


def test_keep_media_false_keeps_nothing(media_server):
    _create(media_server, "bare", keep_media=False)
    r = httpx.post(f"{media_server.url}/v1/collections/bare/items", files=[("files", ("p.jpg", JPEG, "image/jpeg"))], data={"items": '[{"id": "p"}]'})
    assert r.json()["indexed"] == 1
    error = _media(media_server, "bare", "p").json()["error"]
    assert error["status"] == 404 and error["code"] == "media_not_found" and "keep_media=false" in error["message"]
    assert _kept_files(media_server, "bare") == 0
    assert httpx.post(f"{media_server.url}/v1/collections", json={"name": "x", "keep_media": "perhaps"}).status_code == 422


def test_replacing_and_deleting_items_and_collections_deletes_their_media(media_server):
    _create(media_server, "gone")
    images = [{"id": f"i{k}", "image": base64.b64encode(encode(scene(seed=k), "PNG")).decode(), "payload": {"group": "a" if k < 2 else "b"}} for k in range(4)]
    assert httpx.post(f"{media_server.url}/v1/collections/gone/items", json={"items": images}).json()["indexed"] == 4
    assert _kept_files(media_server, "gone") == 4
    before = _media(media_server, "gone", "i3").headers["etag"]
    replaced = [{"id": "i3", "image": base64.b64encode(encode(scene(seed=42), "PNG")).decode(), "payload": {"group": "b"}}]
    httpx.post(f"{media_server.url}/v1/collections/gone/items", json={"items": replaced})
    assert _media(media_server, "gone", "i3").headers["etag"] != before

    deleted = httpx.post(f"{media_server.url}/v1/collections/gone/items/delete", json={"ids": ["i0"]}).json()["deleted"]
    assert deleted == 1 and _kept_files(media_server, "gone") == 3
    by_filter = {"filter": {"must": [{"key": "group", "match": {"value": "b"}}]}}
    assert httpx.post(f"{media_server.url}/v1/collections/gone/items/delete", json=by_filter).json()["deleted"] == 2
    assert _kept_files(media_server, "gone") == 1 and _media(media_server, "gone", "i1").status_code == 200
    assert httpx.delete(f"{media_server.url}/v1/collections/gone").status_code == 200
    assert not list((media_server.data_dir / "kept_media").glob("gone.*"))


def test_the_media_route_is_documented(media_server):
    spec = httpx.get(f"{media_server.url}/openapi.json").json()
    operation = spec["paths"]["/v1/collections/{name}/media/{item_id}"]["get"]
    assert {"200", "304", "307", "404", "422"} <= set(operation["responses"])
    assert "media_not_found" in operation["responses"]["404"]["description"]
    assert {"image/webp", "audio/ogg", "application/json"} <= set(operation["responses"]["200"]["content"])
    assert "keep_media" in spec["components"]["schemas"]["CreateCollectionIn"]["properties"]


def test_qdrant_engine_keeps_media_in_its_hidden_collection(tiny_audio_bundle, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", model={"bundle": tiny_audio_bundle, "intra_op_threads": 1}, index={"engine": "qdrant", "qdrant_url": ":memory:"})
    app = create_app(settings)
    with InProcessServer(app) as server:
        _create(server, "q")
        items = [{"id": "p", "image": base64.b64encode(JPEG).decode()}, {"id": "t", "text": "hello"}]
        assert httpx.post(f"{server.url}/v1/collections/q/items", json={"items": items}).json()["indexed"] == 2
        assert _media(server, "q", "p").headers["content-type"] == "image/webp"
        assert _media(server, "q", "p", original="true").content == JPEG
        store = app.state.collections.media.store
        assert type(store).__name__ == "QdrantMediaStore" and store.ids("q") == {"p", "t"}
        assert [c["name"] for c in httpx.get(f"{server.url}/v1/collections").json()["data"]] == ["q"]
        httpx.post(f"{server.url}/v1/collections/q/items/delete", json={"ids": ["t"]})
        assert store.ids("q") == {"p"}
        httpx.delete(f"{server.url}/v1/collections/q")
        assert store.ids("q") == set()
    assert not (tmp_path / "data" / "kept_media").exists()  # nothing written to the data dir on this engine


def test_a_demo_indexed_before_media_was_kept_gets_its_media_at_the_next_start(tiny_audio_bundle, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "p.jpg").write_bytes(JPEG)
    (tmp_path / "demo" / "t.wav").write_bytes(WAV)
    (tmp_path / "demo" / "items.jsonl").write_text('{"path": "p.jpg", "id": "p"}\n{"path": "t.wav", "id": "t"}\n')
    settings = Settings(data_dir=tmp_path / "data", demo_items=tmp_path / "demo" / "items.jsonl", model={"bundle": tiny_audio_bundle, "intra_op_threads": 1})
    with InProcessServer(create_app(settings)) as server:
        assert _media(server, "demo", "t").headers["content-type"] == "audio/ogg"
    shutil.rmtree(tmp_path / "data" / "kept_media")  # as a server before kept media left it
    with InProcessServer(create_app(settings)) as server:
        assert _media(server, "demo", "p").headers["content-type"] == "image/webp"
        assert _media(server, "demo", "t", original="true").content == WAV


def test_sdk_creates_collections_with_or_without_kept_media(media_server):
    from omnivec_client import Client, Item

    with Client(media_server.url) as omni:
        omni.create_collection("sdk-bare", keep_media=False)
        omni.create_collection("sdk-kept")
        for name in ("sdk-bare", "sdk-kept"):
            omni.add(name, [Item(id="p", image=JPEG)])
    assert _media(media_server, "sdk-bare", "p").status_code == 404 and _media(media_server, "sdk-kept", "p").status_code == 200


def test_media_kept_by_a_0_1_server_is_served_after_the_upgrade(tiny_audio_bundle, tmp_path):
    """0.1 kept each item as a file under data/media/<collection>/; a server of this version imports those
    files into the collection's database at start (before serving) and serves them as before."""
    settings = Settings(data_dir=tmp_path / "data", model={"bundle": tiny_audio_bundle, "intra_op_threads": 1})
    with InProcessServer(create_app(settings)) as server:
        _create(server, "old")
        items = [{"id": "p", "image": base64.b64encode(JPEG).decode()}, {"id": "t", "text": "a red circle"}]
        assert httpx.post(f"{server.url}/v1/collections/old/items", json={"items": items}).json()["indexed"] == 2
        kept = {i: (_media(server, "old", i).content, _media(server, "old", i, original="true").content) for i in ("p", "t")}
    db = tmp_path / "data" / "kept_media" / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(db)) as conn:  # rewrite what was kept in 0.1's layout, then drop the database
        rows = conn.execute("SELECT id, record, preview, original FROM media").fetchall()
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    for n, (item_id, record, preview, original) in enumerate(rows):
        write_legacy_media(tmp_path / "data" / "media" / "old", n, item_id, json.loads(record), preview, original)
    with InProcessServer(create_app(settings)) as server:
        assert not (tmp_path / "data" / "media").exists(), "imported at start"
        for item_id, (preview, original) in kept.items():
            assert _media(server, "old", item_id).content == preview
            assert _media(server, "old", item_id, original="true").content == original
