"""One contract suite for every `IndexStore` engine: both must behave identically.

Engines: `EdgeIndexStore` on a tmp dir (embedded Qdrant Edge) and `QdrantIndexStore` on
`QdrantClient(":memory:")` (qdrant-client local mode). Exactness is checked against numpy cosine.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient

from omnivec.server.index import (
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    EdgeIndexStore,
    Hit,
    IndexStore,
    IndexStoreError,
    InvalidFilter,
    InvalidRequest,
    Point,
    QdrantIndexStore,
)
from omnivec.server.index import edge as edge_mod
from omnivec.server.index.store import ID_KEY, point_uuid

DIM = 16


def _edge(path, **kw):
    return EdgeIndexStore(path, search_threads=1, indexing_threads=1, **kw)


@pytest.fixture(params=["edge", "qdrant"])
def store(request, tmp_path):
    s = _edge(tmp_path / "idx") if request.param == "edge" else QdrantIndexStore(QdrantClient(":memory:"))
    yield s
    s.close()


def clustered(n: int, dim: int = DIM, k: int = 8, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Gaussian-mixture vectors, L2-normalised (realistic: embeddings cluster)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    x = centers[rng.integers(0, k, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(data: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = data @ (q / np.linalg.norm(q))
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


def make(store: IndexStore, name: str = "c", dim: int = DIM, **kw):
    return store.create_collection(name, dim, space_id=kw.pop("space_id", "space-a"), model="m-1", **kw)


def fill(store: IndexStore, name: str, vecs: np.ndarray, payload=lambda i: {"i": i}) -> list[str]:
    ids = [f"p{i}" for i in range(len(vecs))]
    store.upsert(name, [Point(ids[i], vecs[i], payload(i)) for i in range(len(vecs))])
    return ids


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
# Filters
# ------------------------------------------------------------------------------------------------

COLORS = ["red", "green", "blue"]


def _payload(i: int) -> dict:
    p = {
        "tags": [f"t{i % 5}", f"t{i % 7}"],
        "year": 1990 + (i % 30),
        "price": (i % 50) / 10.0,
        "flag": i % 2 == 0,
        "meta": {"color": COLORS[i % 3], "rank": i % 4},
        "items": [{"sku": f"s{i % 6}", "qty": i % 3}, {"sku": f"s{(i + 1) % 6}", "qty": (i + 1) % 3}],
    }
    if i % 10 == 0:
        p["note"] = None
    if i % 10 == 1:
        p["opt"] = []
    elif i % 10 != 0:
        p["opt"] = ["x"]
    return p


def _has(v, x) -> bool:
    return x in v if isinstance(v, list) else v == x


FILTER_CASES = {
    "match_value_in_list": ({"must": [{"key": "tags", "match": {"value": "t3"}}]}, lambda p, i: "t3" in p["tags"]),
    "match_value_int": ({"must": [{"key": "year", "match": {"value": 2000}}]}, lambda p, i: p["year"] == 2000),
    "match_value_bool": ({"must": [{"key": "flag", "match": {"value": True}}]}, lambda p, i: p["flag"]),
    "match_value_false": ({"must": [{"key": "flag", "match": {"value": False}}]}, lambda p, i: not p["flag"]),
    "match_any": (
        {"must": [{"key": "tags", "match": {"any": ["t1", "t6"]}}]},
        lambda p, i: bool({"t1", "t6"} & set(p["tags"])),
    ),
    "match_any_int": ({"must": [{"key": "year", "match": {"any": [1990, 1991]}}]}, lambda p, i: p["year"] in (1990, 1991)),
    "match_except": (
        {"must": [{"key": "meta.color", "match": {"except": ["red", "green"]}}]},
        lambda p, i: p["meta"]["color"] == "blue",
    ),
    "range": ({"must": [{"key": "year", "range": {"gte": 2000, "lt": 2010}}]}, lambda p, i: 2000 <= p["year"] < 2010),
    "range_float": ({"must": [{"key": "price", "range": {"gt": 1.5, "lte": 3.0}}]}, lambda p, i: 1.5 < p["price"] <= 3.0),
    "must_not": ({"must_not": [{"key": "tags", "match": {"value": "t0"}}]}, lambda p, i: "t0" not in p["tags"]),
    "nested_key": ({"must": [{"key": "meta.color", "match": {"value": "red"}}]}, lambda p, i: p["meta"]["color"] == "red"),
    "has_id": ({"must": [{"has_id": ["p1", "p5", "p9", "absent"]}]}, lambda p, i: i in (1, 5, 9)),
    "must_not_has_id": ({"must_not": [{"has_id": ["p1", "p2"]}]}, lambda p, i: i not in (1, 2)),
    "should": (
        {"should": [{"key": "meta.rank", "match": {"value": 0}}, {"key": "year", "range": {"gte": 2015}}]},
        lambda p, i: p["meta"]["rank"] == 0 or p["year"] >= 2015,
    ),
    "combined": (
        {
            "must": [{"key": "flag", "match": {"value": False}}, {"key": "year", "range": {"gte": 1995}}],
            "must_not": [{"key": "meta.color", "match": {"value": "blue"}}],
            "should": [{"key": "tags", "match": {"any": ["t2", "t3"]}}, {"key": "price", "range": {"lt": 1}}],
        },
        lambda p, i: (not p["flag"]) and p["year"] >= 1995 and p["meta"]["color"] != "blue"
        and (bool({"t2", "t3"} & set(p["tags"])) or p["price"] < 1),
    ),
    "sub_group": (
        {"must": [{"should": [{"key": "meta.color", "match": {"value": "red"}}, {"has_id": ["p2"]}]}]},
        lambda p, i: p["meta"]["color"] == "red" or i == 2,
    ),
    "single_condition_not_list": ({"must": {"key": "meta.rank", "match": {"value": 3}}}, lambda p, i: p["meta"]["rank"] == 3),
    "array_path": ({"must": [{"key": "items[].sku", "match": {"value": "s2"}}]}, lambda p, i: any(it["sku"] == "s2" for it in p["items"])),
    "nested_condition": (
        {"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "sku", "match": {"value": "s1"}}, {"key": "qty", "match": {"value": 1}}]}}}]},
        lambda p, i: any(it["sku"] == "s1" and it["qty"] == 1 for it in p["items"]),
    ),
    "is_empty": ({"must": [{"is_empty": {"key": "opt"}}]}, lambda p, i: not p.get("opt")),
    "is_null": ({"must": [{"is_null": {"key": "note"}}]}, lambda p, i: "note" in p and p["note"] is None),
    "min_should": (
        {"min_should": {"conditions": [
            {"key": "flag", "match": {"value": True}},
            {"key": "meta.color", "match": {"value": "red"}},
            {"key": "year", "range": {"lt": 2000}}], "min_count": 2}},
        lambda p, i: sum([p["flag"], p["meta"]["color"] == "red", p["year"] < 2000]) >= 2,
    ),
    "empty_filter": ({}, lambda p, i: True),
}

N_FILTER = 120


INDEXES = {"tags": "keyword", "year": "integer", "price": "float", "flag": "bool", "meta.color": "keyword", "meta.rank": "integer"}


@pytest.fixture
def filtered(store):
    make(store)
    data = clustered(N_FILTER, seed=21)
    fill(store, "c", data, payload=_payload)
    return store, data


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "indexed"])
@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_filters(filtered, case, indexed):
    """Same results with and without payload indexes on the filtered fields."""
    store, data = filtered
    if indexed:
        for f, kind in INDEXES.items():
            store.create_payload_index("c", f, kind)
            store.create_payload_index("c", f, kind)  # idempotent
    flt, pred = FILTER_CASES[case]
    expected = {f"p{i}" for i in range(N_FILTER) if pred(_payload(i), i)}
    assert 0 < len(expected) <= N_FILTER, "test data must exercise the filter"
    assert store.count("c", filter=flt) == len(expected)
    hits = store.search("c", data[0], top_k=N_FILTER, filter=flt)
    assert {h.id for h in hits} == expected
    # filtered ranking is still the exact cosine ranking restricted to the matching points
    idx = np.array(sorted(int(e[1:]) for e in expected))
    order, _ = exact_topk(data[idx], data[0], 5)
    assert [h.id for h in hits[:5]] == [f"p{idx[o]}" for o in order]


def test_create_payload_index_validation(store):
    make(store)
    with pytest.raises(CollectionNotFound):
        store.create_payload_index("nope", "tags", "keyword")
    for field, kind in (("tags", "geo"), ("tags", 5), ("", "keyword"), ("_omnivec_id", "keyword")):
        with pytest.raises(InvalidRequest):
            store.create_payload_index("c", field, kind)
    store.create_payload_index("c", "Tags", "KEYWORD")


def test_match_is_type_strict(store):
    """true is not 1, 1 is not 1.0, "1" is not 1: both engines agree (qdrant_edge needs a workaround)."""
    make(store, dim=2)
    values = {"a": True, "b": 1, "c": False, "d": 0, "e": [True, 2], "f": 1.0, "g": "1"}
    store.upsert("c", [Point(k, [1, 0], {"x": v}) for k, v in values.items()])
    cases = [
        ({"match": {"value": True}}, {"a", "e"}),
        ({"match": {"value": 1}}, {"b"}),
        ({"match": {"value": False}}, {"c"}),
        ({"match": {"value": 0}}, {"d"}),
        ({"match": {"value": "1"}}, {"g"}),
        ({"match": {"any": [1, 2]}}, {"b", "e"}),
        ({"range": {"gte": 1}}, {"b", "e", "f"}),
    ]
    for cond, expected in cases:
        flt = {"must": [{"key": "x", **cond}]}
        assert {h.id for h in store.search("c", [1, 0], top_k=10, filter=flt)} == expected, cond
        assert store.count("c", filter=flt) == len(expected)


BAD_FILTERS = [
    [],
    "tags=x",
    {"must": "x"},
    {"musts": []},
    {"must": [{"key": "tags"}]},
    {"must": [{"key": "tags", "match": {"value": 1.5}}]},
    {"must": [{"key": "tags", "match": {"value": ["a"]}}]},
    {"must": [{"key": "tags", "match": {"text": "a"}}]},
    {"must": [{"key": "tags", "match": {"any": []}}]},
    {"must": [{"key": "tags", "match": {"any": ["a", 1]}}]},
    {"must": [{"key": "tags", "match": {"value": "a", "any": ["b"]}}]},
    {"must": [{"key": "year", "range": {"gte": "2000"}}]},
    {"must": [{"key": "year", "range": {"from": 1}}]},
    {"must": [{"key": "year", "range": {}}]},
    {"must": [{"key": "year", "range": {"gte": 1}, "match": {"value": 1}}]},
    {"must": [{"key": "", "match": {"value": "a"}}]},
    {"must": [{"key": 5, "match": {"value": "a"}}]},
    {"must": [{"key": "_omnivec_id", "match": {"value": "a"}}]},
    {"must": [{"has_id": "p1"}]},
    {"must": [{"has_id": [1, 2]}]},
    {"must": [{"has_id": []}]},
    {"must": [{"geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}]},
    {"must": [{"is_empty": "opt"}]},
    {"must": [{"nested": {"key": "items"}}]},
    {"must": [{}]},
    {"must": [["a"]]},
    {"min_should": {"conditions": [], "min_count": -1}},
]


@pytest.mark.parametrize("bad", BAD_FILTERS, ids=[str(i) for i in range(len(BAD_FILTERS))])
def test_invalid_filter(filtered, bad):
    store, data = filtered
    for call in (
        lambda: store.search("c", data[0], filter=bad),
        lambda: store.count("c", filter=bad),
        lambda: store.delete_points("c", filter=bad),
    ):
        with pytest.raises(InvalidFilter) as ei:
            call()
        assert "Example of a valid filter" in str(ei.value)
    assert store.count("c") == N_FILTER


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


def test_delete_by_ids_and_filter(filtered):
    store, data = filtered
    assert store.delete_points("c", ids=["p0", "p1", "absent"]) == 2
    assert store.count("c") == N_FILTER - 2
    assert store.delete_points("c", ids=["p0"]) == 0
    assert store.delete_points("c", ids=[]) == 0
    red = {"must": [{"key": "meta.color", "match": {"value": "red"}}]}
    n_red = store.count("c", filter=red)
    assert n_red == sum(1 for i in range(2, N_FILTER) if i % 3 == 0)
    assert store.delete_points("c", filter=red) == n_red
    assert store.count("c", filter=red) == 0
    assert store.count("c") == N_FILTER - 2 - n_red
    # ids AND filter: only the listed ids that match are deleted
    green = {"must": [{"key": "meta.color", "match": {"value": "green"}}]}
    assert store.delete_points("c", ids=["p4", "p5", "p7"], filter=green) == 2  # p4, p7 are green
    assert store.existing_ids("c", ["p4", "p5", "p7"]) == {"p5"}
    assert all(h.id not in {"p0", "p1", "p4", "p7"} for h in store.search("c", data[0], top_k=N_FILTER))
    with pytest.raises(InvalidRequest):
        store.delete_points("c")


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


@pytest.fixture(params=["edge", "qdrant"])
def ann_store(request, tmp_path):
    """Like `store`, but Edge builds a real HNSW index even for a small test collection."""
    if request.param == "edge":
        s = _edge(tmp_path / "idx", indexing_threshold_kb=50, full_scan_threshold_kb=10, hnsw_ef=64)
    else:
        s = QdrantIndexStore(QdrantClient(":memory:"))
    yield s
    s.close()


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
# Edge only: persistence, optimize concurrency, exclusive data dir
# ------------------------------------------------------------------------------------------------


def test_edge_persistence_across_close_and_reopen(tmp_path):
    d = tmp_path / "idx"
    s = _edge(d)
    a = make(s, "a", extra={"k": [1, "2"]})
    make(s, "b", dim=4)
    data = clustered(60, seed=31)
    fill(s, "a", data, payload=lambda i: {"i": i, "tag": "x" if i % 2 else "y"})
    s.delete_points("a", ids=["p0"])
    s.delete_points("a", filter={"must": [{"key": "tag", "match": {"value": "y"}}], "must_not": [{"has_id": ["p2"]}]})
    s.upsert("b", [Point("u-ñ", [1, 2, 3, 4], {"z": 1})])
    s.close()
    s.close()  # idempotent
    with pytest.raises(IndexStoreError):
        s.count("a")

    s2 = _edge(d)
    try:
        assert [c.name for c in s2.list_collections()] == ["a", "b"]
        got = s2.get_collection("a")
        assert (got.dim, got.space_id, got.model, got.created_at, got.extra) == (DIM, "space-a", "m-1", a.created_at, {"k": [1, "2"]})
        assert got.count == 31  # 30 odd + p2
        assert s2.existing_ids("a", ["p0", "p1", "p2", "p4"]) == {"p1", "p2"}
        assert s2.retrieve("a", ["p3"])[0].payload == {"i": 3, "tag": "x"}
        assert s2.search("a", data[5], top_k=1)[0].id == "p5"
        assert s2.retrieve("b", ["u-ñ"])[0].payload == {"z": 1}
        s2.upsert("a", [Point("later", data[0], {})])
        s2.optimize("a")
        with pytest.raises(CollectionExists):
            make(s2, "a")
    finally:
        s2.close()
    s3 = _edge(d)
    try:
        assert s3.count("a") == 32 and s3.count("b") == 1
        s3.delete_collection("b")
    finally:
        s3.close()
    s4 = _edge(d)
    try:
        assert [c.name for c in s4.list_collections()] == ["a"]
        assert s4.search("a", data[0], top_k=1)[0].id == "later"
    finally:
        s4.close()


def test_edge_data_dir_is_exclusive(tmp_path):
    s = _edge(tmp_path / "idx")
    make(s, "a")
    try:
        with pytest.raises(IndexStoreError, match="another omnivec process"):
            _edge(tmp_path / "idx")
    finally:
        s.close()


def test_edge_interrupted_create_is_ignored_and_reusable(tmp_path):
    d = tmp_path / "idx"
    (d / "half").mkdir(parents=True)
    (d / "half" / "junk").write_text("x")
    s = _edge(d)
    try:
        assert s.list_collections() == []
        make(s, "half")
        assert s.count("half") == 0
    finally:
        s.close()


def test_edge_optimize_does_not_block_searches_and_keeps_concurrent_writes(tmp_path, monkeypatch):
    # Slow the optimizer child down so that searches and writes certainly overlap with it.
    monkeypatch.setattr(edge_mod, "_OPTIMIZE_CHILD", "import time; time.sleep(1.5)\n" + edge_mod._OPTIMIZE_CHILD)
    s = _edge(tmp_path / "idx", indexing_threshold_kb=50, full_scan_threshold_kb=10)
    try:
        make(s, "c", dim=32)
        data = clustered(1200, dim=32, seed=41)
        fill(s, "c", data[:1000])
        done = threading.Event()
        errors: list[BaseException] = []

        def run():
            try:
                s.optimize("c")
            except BaseException as e:  # pragma: no cover
                errors.append(e)
            finally:
                done.set()

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 30
        while s._collections["c"].journal is None and not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not done.is_set(), "optimize finished before the test could overlap with it"
        # Writes during the build: new points, a delete by id, a delete by filter, a re-upsert.
        s.upsert("c", [Point(f"p{i}", data[i], {"i": i, "late": True}) for i in range(1000, 1200)])
        assert s.delete_points("c", ids=["p1"]) == 1
        assert s.delete_points("c", filter={"must": [{"has_id": ["p2", "p3"]}]}) == 2
        s.upsert("c", [Point("p4", data[4], {"i": 4, "rewritten": True})])
        searches = 0
        while not done.is_set() and searches < 10_000:
            assert s.search("c", data[1100], top_k=1)[0].id == "p1100"
            searches += 1
        t.join(timeout=120)
        assert not errors, errors
        assert searches > 0, "no search completed while optimize() was running"
        info = s._collections["c"].shard.info()
        assert info.indexed_vectors_count > 0
        assert s._collections["c"].meta["generation"] == 1
        assert s.count("c") == 1200 - 3
        assert s.existing_ids("c", ["p1", "p2", "p3", "p4", "p1199"]) == {"p4", "p1199"}
        assert s.retrieve("c", ["p4"])[0].payload == {"i": 4, "rewritten": True}
        assert s.count("c", filter={"must": [{"key": "late", "match": {"value": True}}]}) == 200
        assert sorted(p.name for p in (tmp_path / "idx" / "c").iterdir()) == ["collection.json", "shard-1"]
    finally:
        s.close()
    s2 = _edge(tmp_path / "idx")  # the swapped-in shard is what reopens
    try:
        assert s2.count("c") == 1197
        assert s2.search("c", data[1150], top_k=1)[0].id == "p1150"
    finally:
        s2.close()


def test_edge_delete_collection_during_optimize(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_mod, "_OPTIMIZE_CHILD", "import time; time.sleep(30)\n" + edge_mod._OPTIMIZE_CHILD)
    s = _edge(tmp_path / "idx")
    try:
        make(s, "c")
        fill(s, "c", clustered(50))
        errors: list[BaseException] = []
        t = threading.Thread(target=lambda: _catch(errors, s.optimize, "c"))
        t.start()
        deadline = time.monotonic() + 30
        while s._collections["c"].proc is None and time.monotonic() < deadline:
            time.sleep(0.01)
        s.delete_collection("c")
        t.join(timeout=30)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], CollectionNotFound)
        assert s.list_collections() == []
        make(s, "c")
        assert s.count("c") == 0
    finally:
        s.close()


def _catch(errors, fn, *args):
    try:
        fn(*args)
    except BaseException as e:
        errors.append(e)


# ------------------------------------------------------------------------------------------------
# Qdrant only
# ------------------------------------------------------------------------------------------------


def test_qdrant_ignores_foreign_collections():
    from qdrant_client import models as m

    client = QdrantClient(":memory:")
    client.create_collection("foreign", vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE))
    s = QdrantIndexStore(client)
    make(s, "ours", dim=4)
    assert [c.name for c in s.list_collections()] == ["ours"]
    with pytest.raises(CollectionNotFound):
        s.get_collection("foreign")
    with pytest.raises(CollectionNotFound):
        s.delete_collection("foreign")
    assert client.collection_exists("foreign")
    meta = client.get_collection("ours").config.metadata["omnivec"]
    assert meta["dim"] == 4 and meta["space_id"] == "space-a"
    s.upsert("ours", [Point("a", [1, 0, 0, 0], {"x": 1})])
    rec = client.retrieve("ours", [point_uuid("a")], with_payload=True)[0]
    assert rec.payload == {"x": 1, ID_KEY: "a"}
    s.close()


def test_qdrant_from_settings_memory():
    s = QdrantIndexStore.from_settings(":memory:", api_key=None, prefer_grpc=False, timeout=5)
    make(s, "c", dim=2)
    assert s.get_collection("c").dim == 2
    s.close()


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
