"""One contract suite over every kept-media store: SQLite databases under the data dir (Edge engine)
and a hidden Qdrant collection (qdrant engine, shared by every replica behind that Qdrant)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from qdrant_client import QdrantClient

from omnivec.server.index import EdgeIndexStore, QdrantIndexStore
from omnivec.server.index.store import InvalidRequest
from omnivec.server.index.media import KeptMedia, MediaStore, SqliteMediaStore
from omnivec.server.index.qdrant_media import QdrantMediaStore


@pytest.fixture(params=["sqlite", "qdrant"])
def media(request, tmp_path) -> MediaStore:
    """Each engine's own media store, as the server gets it (`IndexStore.media()`)."""
    if request.param == "sqlite":
        index = EdgeIndexStore(tmp_path / "index", documents_dir=tmp_path)
        store = index.media()
        assert isinstance(store, SqliteMediaStore) and store.root == tmp_path / "kept_media"
    else:
        index = QdrantIndexStore(QdrantClient(":memory:"))
        store = index.media()
        assert isinstance(store, QdrantMediaStore)
    assert index.media() is store  # one instance per index
    yield store
    index.close()


def picture(tag: bytes = b"a") -> KeptMedia:
    return KeptMedia(modality="image", preview=b"RIFF-webp-" + tag, preview_type="image/webp", original=b"\x89PNG-" + tag * 100, original_type="image/png")


def test_put_get_with_and_without_the_original(media):
    assert media.get("photos", "x") is None
    media.put("photos", "x", picture())
    got = media.get("photos", "x")
    assert (got.modality, got.preview, got.preview_type, got.original_type) == ("image", b"RIFF-webp-a", "image/webp", "image/png")
    assert got.original is None and got.original_bytes == len(picture().original)  # the original is only read when asked for
    full = media.get("photos", "x", with_original=True)
    assert full.original == picture().original and full.etag == got.etag == picture().etag


def test_put_replaces_and_the_etag_follows_the_content(media):
    media.put("photos", "x", picture(b"a"))
    media.put("photos", "x", picture(b"b"))
    got = media.get("photos", "x", with_original=True)
    assert got.preview == b"RIFF-webp-b" and got.original == picture(b"b").original
    assert got.etag == picture(b"b").etag != picture(b"a").etag
    media.put("photos", "x", KeptMedia(modality="image", preview=b"p", preview_type="image/webp"))  # no original any more
    assert media.get("photos", "x", with_original=True).original is None


def test_put_many_keeps_a_batch_and_the_last_of_an_id_wins(media, tmp_path):
    batch = [(f"item-{i}", picture(str(i).encode())) for i in range(20)] + [("item-3", picture(b"last"))]
    media.put_many("photos", batch)
    media.put_many("photos", [])
    assert media.ids("photos") == {f"item-{i}" for i in range(20)}
    assert media.get("photos", "item-7", with_original=True).original == picture(b"7").original
    assert media.get("photos", "item-3").preview == b"RIFF-webp-last"

    bad = [("item-a", picture(b"a")), ("item-b", KeptMedia(modality="image", preview=object(), etag="unhashable"))]  # type: ignore[arg-type]
    with pytest.raises(Exception):
        media.put_many("photos", bad)
    assert media.get("photos", "item-a") is None, "a batch that fails keeps nothing of itself"


def test_url_items_keep_their_url_only(media):
    media.put("photos", "u", KeptMedia(modality="audio", url="https://example.org/a.ogg"))
    got = media.get("photos", "u", with_original=True)
    assert (got.url, got.preview, got.original, got.modality) == ("https://example.org/a.ogg", None, None, "audio")


def test_ids_are_free_form_and_collections_are_separate(media):
    odd = ["a/b/../c", "ü ñ 🎵", "x" * 400, "."]
    for item_id in odd:
        media.put("photos", item_id, picture(item_id.encode()[:3]))
    media.put("sounds", "a/b/../c", KeptMedia(modality="audio", preview=b"ogg", preview_type="audio/ogg"))
    assert media.ids("photos") == set(odd) and media.ids("sounds") == {"a/b/../c"}
    assert media.get("photos", "a/b/../c").modality == "image" and media.get("sounds", "a/b/../c").modality == "audio"


def test_delete_and_drop(media):
    for item_id in ("a", "b", "c"):
        media.put("photos", item_id, picture())
    media.put("sounds", "a", KeptMedia(modality="audio", preview=b"ogg", preview_type="audio/ogg"))
    media.delete("photos", ["a", "never-kept"])
    assert media.get("photos", "a") is None and media.ids("photos") == {"b", "c"}
    media.drop("photos")
    assert media.ids("photos") == set() and media.get("photos", "b") is None
    assert media.get("sounds", "a").preview == b"ogg"  # another collection's media stays
    media.drop("never-existed")
    assert media.ids("never-existed") == set() and media.get("never-existed", "x") is None


def test_concurrent_writers_and_readers_see_whole_items(media):
    """Threads putting batches while others read: every read is one whole version (record, preview and
    original from the same put), and the last batch of each id is what stays."""
    errors: list[str] = []

    def writer(w: int) -> None:
        for round_ in range(15):
            media.put_many("photos", [(f"id-{i}", picture(f"{w}-{round_}".encode())) for i in range(8)])

    def reader() -> None:
        for _ in range(60):
            got = media.get("photos", "id-3", with_original=True)
            if got is not None:
                tag = got.preview.removeprefix(b"RIFF-webp-")
                if got.original != picture(tag).original or got.etag != picture(tag).etag:
                    errors.append(f"torn item {tag!r}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert media.ids("photos") == {f"id-{i}" for i in range(8)}


def test_collection_names_are_checked(media):
    with pytest.raises(InvalidRequest):
        media.put("../etc", "x", picture())
    with pytest.raises(InvalidRequest):
        media.drop("../etc")


def test_qdrant_media_is_shared_between_servers_on_one_qdrant():
    """Two replicas (two stores over one Qdrant) see each other's media; a wiped collection is recreated."""
    index = QdrantIndexStore(QdrantClient(":memory:"))
    try:
        one, two = QdrantMediaStore(index), QdrantMediaStore(index)
        one.put("photos", "x", picture())
        assert two.get("photos", "x", with_original=True).original == picture().original
        with index.serialized():
            index.client.delete_collection(QdrantMediaStore.COLLECTION)
        two.put("photos", "y", picture(b"y"))
        assert one.ids("photos") == {"y"}
        assert QdrantMediaStore.COLLECTION not in [c.name for c in index.list_collections()]  # never shown as a user collection
    finally:
        index.close()


def write_legacy_media(collection_dir, n: int, item_id: str, record: dict, preview: bytes | None, original: bytes | None) -> None:
    """One item as 0.1's one-file-per-item store wrote it: `{record}\\n` + preview + original, in a subfolder."""
    header = {"id": item_id, **record, "preview_len": len(preview or b"")}
    (collection_dir / f"{n:02x}").mkdir(parents=True, exist_ok=True)
    (collection_dir / f"{n:02x}" / f"key{n}.media").write_bytes(json.dumps(header).encode() + b"\n" + (preview or b"") + (original or b""))


def test_sqlite_store_imports_a_collection_kept_as_one_file_per_item(tmp_path):
    """0.1 kept each item as `media/<collection>/<xx>/<sha256(id)>.media` ({record}\\n + preview + original):
    the store moves such collections into their databases when it is made (server start) and removes the files."""
    legacy = tmp_path / "media" / "photos"
    for n, item_id in enumerate(["a", "ü/b", "url-item"]):
        kept = picture(str(n).encode()) if item_id != "url-item" else KeptMedia(modality="image", url="https://example.org/x.png")
        write_legacy_media(legacy, n, item_id, kept.record(), kept.preview, kept.original)
    (legacy / "00" / "broken.media").write_bytes(b"not json")
    store = SqliteMediaStore(tmp_path / "kept_media", legacy_root=tmp_path / "media")
    assert not (tmp_path / "media").exists(), "imported before any request"
    assert store.get("photos", "ü/b", with_original=True).original == picture(b"1").original
    assert store.get("photos", "a").etag == picture(b"0").etag
    assert store.get("photos", "url-item").url == "https://example.org/x.png"
    assert store.ids("photos") == {"a", "ü/b", "url-item"} and not legacy.exists()
    store.close()
    reopened = SqliteMediaStore(tmp_path / "kept_media", legacy_root=tmp_path / "media")
    assert reopened.ids("photos") == {"a", "ü/b", "url-item"}
    reopened.close()


KILL_AFTER_PUT = """
import os, signal, sys
from pathlib import Path
from omnivec.server.index.media import KeptMedia, SqliteMediaStore
store = SqliteMediaStore(Path(sys.argv[1]))
store.put_many("photos", [(f"id-{i}", KeptMedia(modality="text", preview=b"p%d" % i, preview_type="text/plain", original=b"o" * 5000)) for i in range(64)])
print("acknowledged", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sqlite_store_keeps_an_acknowledged_batch_through_kill_9(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_PUT, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9 and "acknowledged" in proc.stdout, proc.stderr
    store = SqliteMediaStore(tmp_path)
    assert len(store.ids("photos")) == 64 and store.get("photos", "id-63", with_original=True).original == b"o" * 5000
    store.close()
