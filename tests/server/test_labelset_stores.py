"""One contract suite over every label-set store: files under the data dir (Edge engine) and a
Qdrant collection (qdrant engine, so every replica behind a Qdrant server sees the same sets)."""

from __future__ import annotations

import threading

import pytest
from qdrant_client import QdrantClient

from omnivec.server.errors import OmnivecError
from omnivec.server.index import EdgeIndexStore, QdrantIndexStore
from omnivec.server.index.documents import FileDocuments
from omnivec.server.services.labelsets import LabelSetStore

COLLECTION = "_omnivec_labelsets"


@pytest.fixture(params=["edge", "qdrant"])
def labelsets(request, tmp_path) -> LabelSetStore:
    """Label sets through the store interface of each engine, as the server opens them."""
    index = EdgeIndexStore(tmp_path / "index") if request.param == "edge" else QdrantIndexStore(QdrantClient(":memory:"))
    yield LabelSetStore(index.documents("labelsets"))
    index.close()


def test_edge_keeps_label_sets_as_files_beside_the_index(tmp_path):
    index = EdgeIndexStore(tmp_path / "index")
    LabelSetStore(index.documents("labelsets")).put("scenes", ["beach"])
    assert (tmp_path / "labelsets" / "scenes.json").is_file()
    index.close()


def test_put_get_list_delete(labelsets):
    assert labelsets.list() == []
    stored = labelsets.put("scenes", ["beach", "forest"], ["a photo of a {}."], "outdoor")
    got = labelsets.get("scenes")
    assert (got.name, got.labels, got.templates, got.description) == ("scenes", ["beach", "forest"], ["a photo of a {}."], "outdoor")
    assert got.updated_at == stored.updated_at
    labelsets.put("animals", ["cat", "dog"])
    assert [s.name for s in labelsets.list()] == ["animals", "scenes"]
    labelsets.delete("scenes")
    assert [s.name for s in labelsets.list()] == ["animals"]


def test_put_replaces(labelsets):
    labelsets.put("scenes", ["beach"])
    labelsets.put("scenes", ["desert", "snow"], description="v2")
    assert labelsets.get("scenes").labels == ["desert", "snow"] and len(labelsets.list()) == 1


@pytest.mark.parametrize("action", ["get", "delete"])
def test_missing_sets_are_404_naming_them(labelsets, action):
    with pytest.raises(OmnivecError) as info:
        getattr(labelsets, action)("nope")
    assert info.value.code.value == "labelset_not_found" and "nope" in info.value.message


def test_bad_names_and_labels_are_refused(labelsets):
    for call, code in [
        (lambda: labelsets.put("bad name", ["a"]), "invalid_request"),
        (lambda: labelsets.put("ok", []), "labels_empty"),
        (lambda: labelsets.put("ok", ["a", "a"]), "invalid_request"),
        (lambda: labelsets.put("ok", ["a"], ["no slot"]), "invalid_request"),
        (lambda: labelsets.get("../etc"), "invalid_request"),
    ]:
        with pytest.raises(OmnivecError) as info:
            call()
        assert info.value.code.value == code
    assert labelsets.list() == []


def test_unicode_labels_survive(labelsets):
    labelsets.put("words", ["Straße", "猫", "🙂 smile"], description="übersetzt")
    got = labelsets.get("words")
    assert got.labels == ["Straße", "猫", "🙂 smile"] and got.description == "übersetzt"


def test_concurrent_puts_leave_every_set(labelsets):
    def put(i: int) -> None:
        labelsets.put(f"set-{i}", [f"label {i}", "other"])

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s.name for s in labelsets.list()) == sorted(f"set-{i}" for i in range(8))


def test_qdrant_sets_are_shared_by_every_server_on_the_same_qdrant():
    """Two servers (two stores) on one Qdrant: a set put through one is read through the other,
    and the label-set collection never shows up as a user collection."""
    index = QdrantIndexStore(QdrantClient(":memory:"))
    first, second = LabelSetStore(index.documents("labelsets")), LabelSetStore(index.documents("labelsets"))
    first.put("shared", ["x", "y"])
    assert second.get("shared").labels == ["x", "y"]
    second.delete("shared")
    assert first.list() == []
    assert index.list_collections() == []
    index.close()


def test_a_set_deleted_while_listing_is_left_out(tmp_path):
    class DeletedMeanwhile(FileDocuments):
        def get(self, name):
            if name == "gone":
                (self.root / "gone.json").unlink(missing_ok=True)  # another request deletes it right now
            return super().get(name)

    labelsets = LabelSetStore(DeletedMeanwhile(tmp_path / "labelsets"))
    labelsets.put("gone", ["a"])
    labelsets.put("kept", ["b"])
    assert [s.name for s in labelsets.list()] == ["kept"]


def test_the_qdrant_collection_is_made_again_if_it_vanishes():
    index = QdrantIndexStore(QdrantClient(":memory:"))
    labelsets = LabelSetStore(index.documents("labelsets"))
    labelsets.put("first", ["a"])
    index.client.delete_collection(COLLECTION)  # Qdrant wiped or restored under a running server
    labelsets.put("second", ["b"])
    assert [s.name for s in labelsets.list()] == ["second"]
    index.close()
