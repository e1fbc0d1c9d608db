"""Edge only: persistence, optimize concurrency (copy in a child process), exclusive data dir."""

from __future__ import annotations

import threading
import uuid
import time

import numpy as np
import pytest

from omnivec.server.index import (
    CollectionExists,
    CollectionNotFound,
    IndexStoreError,
    Point,
)
from omnivec.server.index import edge_optimizer as edge_mod
from tests.server.index.support import DIM, _edge, clustered, fill, make


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
        # Orderings the catch-up must get right: a new point deleted again; an old point whose
        # payload changes before a delete by its old payload (it survives); a moved vector.
        s.upsert("c", [Point("gone", data[7], {"tmp": True})])
        s.upsert("c", [Point("p5", data[5], {"i": 5, "tag": "kept"})])
        assert s.delete_points("c", filter={"should": [{"key": "tmp", "match": {"value": True}}, {"key": "i", "match": {"value": 5}}], "must_not": [{"key": "tag", "match": {"value": "kept"}}]}) == 1
        s.upsert("c", [Point("p6", data[1199], {"i": 6, "moved": True})])
        s.upsert("c", [Point("p1100", data[1100], {"i": 1100, "late": True})])  # written twice
        journal = s._collections["c"].journal
        assert journal is not None and len(journal.ops) == 3, "upserts are journaled as ids, other writes as operations"
        assert len(journal.touched_ids()) == 200 + 4  # p1000-p1199 (p1100 twice), p4, gone, p5, p6
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
        assert s.existing_ids("c", ["gone", "p5"]) == {"p5"}
        assert s.retrieve("c", ["p5"])[0].payload == {"i": 5, "tag": "kept"}
        moved = s.retrieve("c", ["p6"], with_vectors=True)[0]
        assert moved.payload == {"i": 6, "moved": True}
        unit = np.asarray(data[1199], np.float32) / np.linalg.norm(data[1199])
        np.testing.assert_allclose(moved.vector, unit, atol=4 * np.finfo(np.float32).eps)  # normalised once more at most
        assert [h.id for h in s.search("c", data[1199], top_k=2)] in (["p1199", "p6"], ["p6", "p1199"])
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




def test_an_engine_failure_is_500_index_failed_and_logged(tmp_path, caplog):
    """qdrant_edge raises bare exceptions; one the base did not foresee becomes index_failed, with the cause logged."""
    from omnivec.server.index.errors import IndexFailed

    store = _edge(tmp_path / "idx")
    make(store)
    fill(store, "c", clustered(5))

    class BrokenShard:
        def __init__(self, inner):
            self.inner = inner

        def query(self, request):
            raise RuntimeError("segment checksum mismatch")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    store._collections["c"].shard = BrokenShard(store._collections["c"].shard)
    with pytest.raises(IndexFailed) as info:
        store.search("c", clustered(1)[0])
    assert (info.value.status, info.value.code.value) == (500, "index_failed") and "segment checksum mismatch" in info.value.message
    assert any("index engine failed" in r.message and r.exc_info for r in caplog.records)
    store._collections["c"].shard = store._collections["c"].shard.inner
    store.close()


@pytest.mark.parametrize("seed", range(6))
def test_build_journal_catch_up_matches_the_live_shard(tmp_path, seed):
    # Random writes on a small id space: before the copy, during the build (first round), and
    # while the first round catches up (second round); the caught-up copy must equal the live shard.
    import random

    import qdrant_edge as qe

    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(24)]

    def shard(name):
        return qe.EdgeShard.create(str(tmp_path / name), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)))

    def random_op():
        kind = rng.random()
        if kind < 0.6:
            batch = rng.sample(ids, rng.randint(1, 4))
            points = [qe.Point(i, [rng.uniform(0.1, 1) for _ in range(4)], {"g": rng.randint(0, 7)}) for i in batch]
            return qe.UpdateOperation.upsert_points(points), batch
        if kind < 0.8:
            return qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[qe.FieldCondition("g", match=qe.MatchValue(rng.randint(0, 7)))])), None
        return qe.UpdateOperation.delete_points(rng.sample(ids, 2)), None

    live, copy = shard("live"), shard("copy")
    for _ in range(30):  # before the copy: both shards see them
        op, _ = random_op()
        live.update(op)
        copy.update(op)
    first, second = edge_mod.BuildJournal(), edge_mod.BuildJournal()
    # A point whose new payload is deleted by filter: the copy's old payload does not match it.
    stale = qe.Point(ids[0], [1.0, 0.5, 0.5, 0.5], {"g": 100})
    for s in (live, copy):
        s.update(qe.UpdateOperation.upsert_points([stale]))
    for op, upserted in (
        (qe.UpdateOperation.upsert_points([qe.Point(ids[0], [0.5, 1.0, 0.5, 0.5], {"g": 101})]), [ids[0]]),
        (qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[qe.FieldCondition("g", match=qe.MatchValue(101))])), None),
    ):
        live.update(op)
        first.record(op, upserted)
    for journal in (first, second):
        for _ in range(30):
            op, upserted = random_op()
            live.update(op)
            journal.record(op, upserted)
        if journal is first:
            first.catch_up(live, copy)  # the second round's writes happen after this read
    second.catch_up(live, copy)

    def state(s):
        return {str(r.id): (r.payload, np.asarray(r.vector, np.float32)) for r in s.retrieve(ids, True, True)}

    caught_up, expected = state(copy), state(live)
    assert expected, "the random writes left nothing to compare"
    assert sorted(caught_up) == sorted(expected)
    for uid, (payload, vector) in expected.items():
        assert caught_up[uid][0] == payload, uid
        # the copy re-normalises a unit vector once more: a few float32 ulps, on any CPU
        np.testing.assert_allclose(caught_up[uid][1], vector, atol=4 * np.finfo(np.float32).eps)
    live.close()
    copy.close()
