"""One contract suite over every kept-media store: files under the data dir (Edge engine) and a
hidden Qdrant collection (qdrant engine, shared by every replica behind that Qdrant)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from omnivec.server.index import EdgeIndexStore, QdrantIndexStore
from omnivec.server.index.store import InvalidRequest
from omnivec.server.index.media import FileMediaStore, KeptMedia, MediaStore
from omnivec.server.index.qdrant_media import QdrantMediaStore


@pytest.fixture(params=["file", "qdrant"])
def media(request, tmp_path) -> MediaStore:
    """Each engine's own media store, as the server gets it (`IndexStore.media()`)."""
    if request.param == "file":
        index = EdgeIndexStore(tmp_path / "index", documents_dir=tmp_path)
        store = index.media()
        assert isinstance(store, FileMediaStore) and store.root == tmp_path / "media"
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
    if isinstance(media, FileMediaStore):
        assert not list((tmp_path / "media").rglob("*.tmp")), "no temp file is left behind"


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
