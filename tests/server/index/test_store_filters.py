"""The contract suite's filter half: every supported filter shape, on both engines, against a numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec.server.index import (
    CollectionNotFound,
    InvalidFilter,
    InvalidRequest,
    Point,
)
from tests.server.index.support import clustered, exact_topk, fill, make


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
