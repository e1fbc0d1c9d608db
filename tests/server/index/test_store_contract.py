"""One contract suite for every `IndexStore` engine: both must behave identically.

Engines: `EdgeIndexStore` on a tmp dir (embedded Qdrant Edge) and `QdrantIndexStore` on
`QdrantClient(":memory:")` (qdrant-client local mode). Exactness is checked against numpy cosine.
Filters: test_store_filters.py; engine-specific behaviour: test_edge_engine.py, test_qdrant_engine.py.
Over 400 lines on purpose: it is the one suite both engines must pass, kept together so that a
behaviour added to one engine is visibly owed by the other.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from omnivec.server.index import (
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    EdgeIndexStore,
    Hit,
    IndexStore,
    InvalidRequest,
    Point,
)
from omnivec.server.index.store import point_uuid
from tests.server.index.support import DIM, clustered, exact_topk, fill, make


# ------------------------------------------------------------------------------------------------
# Collections
# ------------------------------------------------------------------------------------------------


def test_is_an_index_store(store):
    assert isinstance(store, IndexStore)


def test_collection_lifecycle(store):
    info = make(store, "photos", extra={"note": "x", "nested": {"a": [1, 2]}})
    assert (info.name, info.dim, info.space_id, info.model, info.count) == ("photos", DIM, "space-a", "m-1", 0)
    assert info.extra == {"note": "x", "nested": {"a": [1, 2]}}
    assert info.created_at.endswith("+00:00")
    got = store.get_collection("photos")
    assert got == info
    make(store, "audio", dim=8)
    assert [c.name for c in store.list_collections()] == ["audio", "photos"]
    with pytest.raises(CollectionExists, match="already exists"):
        make(store, "photos")
    with pytest.raises(CollectionNotFound, match="does not exist"):
        store.get_collection("nope")
    store.delete_collection("photos")
    with pytest.raises(CollectionNotFound):
        store.get_collection("photos")
    with pytest.raises(CollectionNotFound):
        store.delete_collection("photos")
    assert [c.name for c in store.list_collections()] == ["audio"]
    # the name is free again, with another dimension
    assert make(store, "photos", dim=4).dim == 4
    store.upsert("photos", [Point("a", [1, 0, 0, 0], {})])
    assert store.get_collection("photos").count == 1


@pytest.mark.parametrize("bad", ["", "../x", "a b", "x/y", ".hidden", "_x", "a" * 129, "é"])
def test_invalid_collection_name(store, bad):
    with pytest.raises(InvalidRequest, match="invalid collection name"):
        make(store, bad)


def test_invalid_dim(store):
    for dim in (0, -1, 1.5, True):
        with pytest.raises(InvalidRequest):
            make(store, "c", dim=dim)


def test_operations_on_missing_collection(store):
    v = np.ones(DIM)
    calls = [
        lambda: store.upsert("nope", [Point("a", v, {})]),
        lambda: store.retrieve("nope", ["a"]),
        lambda: store.existing_ids("nope", ["a"]),
        lambda: store.delete_points("nope", ids=["a"]),
        lambda: store.delete_points("nope", filter={"must": [{"key": "a", "match": {"value": 1}}]}),
        lambda: store.search("nope", v),
        lambda: store.count("nope"),
        lambda: store.optimize("nope"),
        lambda: store.create_payload_index("nope", "tags", "keyword"),
        lambda: store.delete_collection("nope"),
    ]
    for call in calls:
        with pytest.raises(CollectionNotFound):
            call()


# ------------------------------------------------------------------------------------------------
# Points
# ------------------------------------------------------------------------------------------------


def test_upsert_retrieve_round_trip(store):
    make(store)
    vecs = clustered(5)
    payloads = [
        {"title": "ünïcødé 🙂", "tags": ["a", "b"], "meta": {"color": "red", "size": [1, 2]}, "n": None},
        {"score": 0.5, "flag": True, "empty": {}, "list": []},
        {},
        {"_omnivec_id": "forged", "_omnivec_x": 1, "keep": "yes"},  # reserved keys are dropped
        {"deep": {"a": {"b": {"c": [{"d": 1}]}}}},
    ]
    store.upsert("c", [Point(f"id{i}", vecs[i], payloads[i]) for i in range(5)])
    got = store.retrieve("c", ["id3", "missing", "id0", "id1", "id2", "id4", "id0"])
    assert [p.id for p in got] == ["id3", "id0", "id1", "id2", "id4"]  # request order, missing absent
    by = {p.id: p for p in got}
    assert by["id0"].payload == payloads[0]
    assert by["id1"].payload == payloads[1]
    assert by["id2"].payload == {}
    assert by["id3"].payload == {"keep": "yes"}
    assert by["id4"].payload == payloads[4]
    for p in got:
        assert not any(k.startswith("_omnivec") for k in p.payload)
        assert list(p.vector) == []  # no vectors unless asked
    with_vecs = store.retrieve("c", ["id1"], with_vectors=True)[0]
    np.testing.assert_allclose(with_vecs.vector, vecs[1] / np.linalg.norm(vecs[1]), atol=1e-5)
    assert store.retrieve("c", []) == []
    assert store.retrieve("c", ["missing"]) == []


def test_unnormalised_vectors_and_list_input(store):
    make(store, dim=3)
    store.upsert("c", [Point("a", [3.0, 0.0, 0.0], {}), Point("b", np.array([0, 5, 5], dtype=np.float64), {})])
    hits = store.search("c", [10.0, 0.0, 0.0], top_k=2)
    assert [h.id for h in hits] == ["a", "b"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(store.retrieve("c", ["b"], with_vectors=True)[0].vector, [0, 2**-0.5, 2**-0.5], atol=1e-6)


WEIRD_IDS = [
    "a",
    "0",
    "123456789",
    "ünïcødé-ключ-键-🙂",
    "with space",
    "/slashes/and?query=1&x#frag",
    "\"quotes'\\",
    "x" * 1000,
    "6f1c0b1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",  # canonical UUID: stored as itself
    "6F1C0B1E-2F3A-4B5C-8D9E-0A1B2C3D4E5F",  # upper-case twin: a different id
    "{6f1c0b1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f}",  # braced twin: a different id too
    "6f1c0b1e2f3a4b5c8d9e0a1b2c3d4e5f",  # hex twin
    "00000000-0000-0000-0000-000000000000",
]


def test_string_ids_of_any_form(store):
    make(store)
    vecs = clustered(len(WEIRD_IDS), seed=3)
    store.upsert("c", [Point(pid, vecs[i], {"n": i}) for i, pid in enumerate(WEIRD_IDS)])
    assert store.count("c") == len(WEIRD_IDS)
    got = store.retrieve("c", WEIRD_IDS)
    assert [p.id for p in got] == WEIRD_IDS
    assert [p.payload["n"] for p in got] == list(range(len(WEIRD_IDS)))
    assert store.existing_ids("c", WEIRD_IDS + ["nope"]) == set(WEIRD_IDS)
    for i, pid in enumerate(WEIRD_IDS):
        assert store.search("c", vecs[i], top_k=1)[0].id == pid
    assert point_uuid(WEIRD_IDS[8]) == WEIRD_IDS[8]
    assert len({point_uuid(i) for i in WEIRD_IDS}) == len(WEIRD_IDS)
    hits = store.search("c", vecs[0], top_k=len(WEIRD_IDS), filter={"must": [{"has_id": WEIRD_IDS[3:6]}]})
    assert {h.id for h in hits} == set(WEIRD_IDS[3:6])
    assert store.delete_points("c", ids=[WEIRD_IDS[9]]) == 1
    assert store.existing_ids("c", WEIRD_IDS[8:10]) == {WEIRD_IDS[8]}


def test_invalid_ids(store):
    make(store)
    for bad in ("", 5, None):
        with pytest.raises(InvalidRequest):
            store.upsert("c", [Point(bad, np.ones(DIM), {})])


def test_idempotent_reupsert(store):
    make(store)
    v = clustered(3, seed=1)
    store.upsert("c", [Point("x", v[0], {"version": 1}), Point("y", v[1], {})])
    store.upsert("c", [Point("x", v[0], {"version": 1}), Point("y", v[1], {})])
    assert store.count("c") == 2
    store.upsert("c", [Point("x", v[2], {"version": 2})])
    assert store.count("c") == 2
    assert store.retrieve("c", ["x"])[0].payload == {"version": 2}  # payload replaced, not merged
    assert store.search("c", v[2], top_k=1)[0].id == "x"
    # duplicates inside one batch: the last one wins
    store.upsert("c", [Point("z", v[0], {"v": "first"}), Point("z", v[1], {"v": "last"})])
    assert store.count("c") == 3
    assert store.retrieve("c", ["z"])[0].payload == {"v": "last"}
    store.upsert("c", [])
    assert store.count("c") == 3


# ------------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------------


def test_search_matches_exact_numpy_cosine(store):
    make(store)
    data = clustered(400, seed=7)
    ids = fill(store, "c", data)
    queries = clustered(12, seed=99)
    for q in queries:
        order, scores = exact_topk(data, q, 10)
        hits = store.search("c", q * 3.0, top_k=10)  # query norm must not matter
        assert [h.id for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-4)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert all(isinstance(h, Hit) and h.payload == {"i": int(h.id[1:])} for h in hits)


def test_search_payload_and_vector_flags(store):
    make(store)
    data = clustered(20, seed=2)
    fill(store, "c", data)
    hits = store.search("c", data[0], top_k=3, with_payload=False)
    assert hits[0].id == "p0" and all(h.payload is None and h.vector is None for h in hits)
    hits = store.search("c", data[0], top_k=3, with_vectors=True)
    np.testing.assert_allclose(hits[0].vector, data[0], atol=1e-5)
    assert hits[0].payload == {"i": 0}


def test_top_k_offset_pagination(store):
    make(store)
    data = clustered(300, seed=11)
    fill(store, "c", data)
    q = clustered(1, seed=12)[0]
    full = store.search("c", q, top_k=30)
    pages = [store.search("c", q, top_k=10, offset=o) for o in (0, 10, 20)]
    assert [h.id for p in pages for h in p] == [h.id for h in full]
    assert len(store.search("c", q, top_k=10, offset=295)) == 5
    assert store.search("c", q, top_k=10, offset=300) == []
    assert len(store.search("c", q, top_k=1000)) == 300
    for bad in ({"top_k": 0}, {"top_k": -1}, {"offset": -1}, {"top_k": 2.5}):
        with pytest.raises(InvalidRequest):
            store.search("c", q, **bad)


def test_score_threshold(store):
    make(store)
    data = clustered(200, seed=5)
    fill(store, "c", data)
    q = clustered(1, seed=6)[0]
    ranked = store.search("c", q, top_k=20)
    cut = (ranked[4].score + ranked[5].score) / 2
    got = store.search("c", q, top_k=20, score_threshold=cut)
    assert [h.id for h in got] == [h.id for h in ranked[:5]]
    assert all(h.score >= cut for h in got)
    assert store.search("c", q, top_k=20, score_threshold=1.01) == []
    assert len(store.search("c", q, top_k=20, score_threshold=-1.0)) == 20
    with pytest.raises(InvalidRequest):
        store.search("c", q, score_threshold=float("nan"))


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def test_dimension_mismatch(store):
    make(store)
    good = np.ones(DIM)
    with pytest.raises(DimensionMismatch) as ei:
        store.upsert("c", [Point("a", good, {}), Point("b", np.ones(DIM + 1), {})])
    assert (ei.value.expected, ei.value.got) == (DIM, DIM + 1)
    assert "expects 16" in str(ei.value)
    assert store.count("c") == 0  # the batch is validated before anything is written
    with pytest.raises(DimensionMismatch):
        store.search("c", np.ones(DIM - 1))
    with pytest.raises(InvalidRequest):
        store.search("c", np.ones((2, DIM)))


def test_invalid_vectors(store):
    make(store, dim=3)
    for bad in ([0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], [float("inf"), 0.0, 0.0]):
        with pytest.raises(InvalidRequest):
            store.upsert("c", [Point("a", bad, {})])
        with pytest.raises(InvalidRequest):
            store.search("c", bad)
    assert store.count("c") == 0


# ------------------------------------------------------------------------------------------------
# Deletes, counts, existing ids
# ------------------------------------------------------------------------------------------------


def test_existing_ids_for_resumable_indexing(store):
    make(store)
    data = clustered(50, seed=4)
    ids = fill(store, "c", data[:30])
    wanted = [f"p{i}" for i in range(50)]
    have = store.existing_ids("c", wanted)
    assert have == set(ids)
    todo = [i for i, pid in enumerate(wanted) if pid not in have]
    store.upsert("c", [Point(wanted[i], data[i], {"i": i}) for i in todo])
    assert store.existing_ids("c", wanted) == set(wanted)
    assert store.existing_ids("c", []) == set()
    assert store.count("c") == 50


def test_concurrent_writers_and_readers(store):
    make(store)
    data = clustered(400, seed=8)
    errors: list[BaseException] = []

    def writer(k: int):
        try:
            for j in range(k * 100, (k + 1) * 100, 20):
                store.upsert("c", [Point(f"p{i}", data[i], {"w": k}) for i in range(j, j + 20)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            for _ in range(30):
                store.search("c", data[0], top_k=5, filter={"must": [{"key": "w", "range": {"gte": 0}}]})
                store.count("c")
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert store.count("c") == 400
    assert store.search("c", data[123], top_k=1)[0].id == "p123"


# ------------------------------------------------------------------------------------------------
# Optimize
# ------------------------------------------------------------------------------------------------



def test_optimize_then_search_still_correct(ann_store):
    store = ann_store
    make(store, dim=32)
    data = clustered(1500, dim=32, k=20, seed=13, spread=0.5)
    fill(store, "c", data, payload=lambda i: {"i": i, "odd": i % 2 == 1})
    queries = clustered(20, dim=32, k=20, seed=14, spread=0.5)
    before = [[h.id for h in store.search("c", q, top_k=10)] for q in queries]
    store.optimize("c")
    store.optimize("c")  # idempotent
    if isinstance(store, EdgeIndexStore):
        info = store._collections["c"].shard.info()
        assert info.indexed_vectors_count > 0, "optimize() should have built an HNSW index"
    assert store.count("c") == 1500
    recall = []
    for q, exact_ids in zip(queries, before):
        order, _ = exact_topk(data, q, 10)
        assert exact_ids == [f"p{i}" for i in order]  # brute force before optimize is exact
        got = [h.id for h in store.search("c", q, top_k=10)]
        recall.append(len(set(got) & set(exact_ids)) / 10)
    assert np.mean(recall) >= 0.95
    for i in (0, 7, 999):  # self-queries find themselves
        assert store.search("c", data[i], top_k=1)[0].id == f"p{i}"
    odd = store.search("c", queries[0], top_k=10, filter={"must": [{"key": "odd", "match": {"value": True}}]})
    assert len(odd) == 10 and all(h.payload["odd"] for h in odd)
    # writes after optimize are visible
    store.upsert("c", [Point("new", queries[0], {})])
    assert store.search("c", queries[0], top_k=1)[0].id == "new"
    assert store.delete_points("c", ids=["p0"]) == 1
    assert store.count("c") == 1500


# ------------------------------------------------------------------------------------------------
# Serving-path hygiene
# ------------------------------------------------------------------------------------------------


def test_index_layer_never_imports_torch():
    code = (
        "import sys\n"
        "import omnivec.server.index as ix\n"
        "ix.EdgeIndexStore, ix.QdrantIndexStore\n"
        "import omnivec.server.index.filters\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_uuid_mapping_is_stable():
    # Changing the namespace would orphan every stored point: pin it.
    assert point_uuid("hello") == str(uuid.uuid5(uuid.UUID("3b0f6f5e-6d0c-5a3e-9a51-6f6d6e697665"), "hello"))
    assert point_uuid("hello") == point_uuid("hello")
    assert len(point_uuid("x" * 10_000)) == 36


# --- scroll: every stored point once, page by page ------------------------------------------


def _scroll_all(store, name, **kw):
    seen, cursor, pages = [], None, 0
    while True:
        points, cursor = store.scroll(name, cursor=cursor, **kw)
        seen += points
        pages += 1
        if cursor is None:
            return seen, pages
        assert pages < 1000, "scroll never ended"


def test_scroll_pages_through_every_point_once(store):
    store.create_collection("s", DIM, "space", "m")
    data = clustered(53)
    store.upsert("s", [Point(f"doc-{i}", data[i], {"i": i, "even": i % 2 == 0}) for i in range(53)])
    points, pages = _scroll_all(store, "s", limit=10)
    assert pages == 6 and sorted(p.id for p in points) == sorted(f"doc-{i}" for i in range(53))
    assert all(p.payload["i"] == int(p.id.split("-")[1]) and p.vector == [] for p in points)
    evens, _ = _scroll_all(store, "s", limit=7, filter={"must": [{"key": "even", "match": {"value": True}}]})
    assert sorted(p.payload["i"] for p in evens) == list(range(0, 53, 2))


def test_scroll_returns_unit_vectors_on_request(store):
    store.create_collection("s", DIM, "space", "m")
    data = clustered(5)
    store.upsert("s", [Point(f"d{i}", data[i] * 3.0) for i in range(5)])
    points, cursor = store.scroll("s", limit=100, with_vectors=True)
    assert cursor is None and len(points) == 5
    by_id = {p.id: np.asarray(p.vector) for p in points}
    for i in range(5):
        np.testing.assert_allclose(by_id[f"d{i}"], data[i] / np.linalg.norm(data[i]), atol=1e-5)


def test_scroll_refuses_bad_pages(store):
    store.create_collection("s", DIM, "space", "m")
    for kwargs in ({"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}):
        with pytest.raises(InvalidRequest):
            store.scroll("s", **kwargs)
    with pytest.raises(CollectionNotFound):
        store.scroll("missing")
    assert store.scroll("s") == ([], None)
