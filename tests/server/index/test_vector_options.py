"""Per-collection vector options (quantisation, on_disk, HNSW shape) on both engines.

Edge is checked down to what the engine persisted (`edge_config.json`, the quantised segment files)
and to what searches return after a real HNSW build: quantised searches are rescored with the float
vectors, so every returned score is the exact float cosine. qdrant-client's local mode cannot honour
these options and must say so (422); the keyword arguments a Qdrant server gets are checked as
qdrant-client models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from omnivec.server.index import InvalidRequest, QdrantIndexStore, VectorOptions
from omnivec.server.index.qdrant import qdrant_collection_config, qdrant_search_params
from tests.server.index.support import _edge, clustered, exact_topk, fill

DIM = 48
FP32_EPS = float(np.finfo(np.float32).eps)


def test_defaults_are_the_old_collections():
    assert VectorOptions.from_json(None) == VectorOptions() and VectorOptions().is_default
    assert VectorOptions("int8").effective_oversampling == 2.0 and VectorOptions("binary").effective_oversampling == 3.0
    assert VectorOptions().effective_oversampling is None


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"quantization": "int4"}, "quantization must be one of"),
        ({"oversampling": 2.0}, "only applies to a quantised collection"),
        ({"quantization": "int8", "oversampling": 0.5}, "oversampling must be"),
        ({"hnsw_m": 2}, "hnsw.m must be"),
        ({"hnsw_ef_construct": 10**6}, "hnsw.ef_construct must be"),
        ({"hnsw_ef": 0}, "hnsw.ef must be"),
    ],
)
def test_bad_options_say_what_is_allowed(kwargs, words):
    with pytest.raises(InvalidRequest, match=words):
        VectorOptions(**kwargs)


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_edge_builds_quantised_hnsw_and_rescores_with_float_vectors(tmp_path, quantization):
    store = _edge(tmp_path / "idx", indexing_threshold_kb=50, full_scan_threshold_kb=10, hnsw_ef=64)
    opts = VectorOptions(quantization, on_disk=quantization == "int8", hnsw_m=8, hnsw_ef_construct=40)
    try:
        info = store.create_collection("c", DIM, "space-a", "m-1", vectors=opts)
        assert info.vectors == opts
        data = clustered(2500, DIM, seed=3)
        fill(store, "c", data)
        store.optimize("c")
        shard = next((tmp_path / "idx" / "c").glob("shard-*"))
        config = json.loads((shard / "edge_config.json").read_text())
        assert config["hnsw_config"]["m"] == 8 and config["hnsw_config"]["ef_construct"] == 40
        vectors = config["vectors"][""]
        cold = [vectors.get("memory") == "cold", config["hnsw_config"].get("memory") == "cold"]
        assert cold == [opts.on_disk, opts.on_disk]
        quantised = [json.loads(p.read_text())["quantization_config"] for p in shard.rglob("quantized.config.json")]
        if quantization == "none":
            assert "quantization_config" not in vectors or vectors["quantization_config"] is None
            assert not quantised
        else:
            key = "scalar" if quantization == "int8" else "binary"
            assert key in vectors["quantization_config"] and quantised and all(key in q for q in quantised)
        recalls = []
        for qi in range(0, 2500, 125):
            hits = store.search("c", data[qi], top_k=10)
            for h in hits:  # rescored: the exact float cosine, whatever the compact copy said
                exact = float(data[int(h.id[1:])] @ data[qi])
                assert abs(h.score - exact) <= 8 * DIM * FP32_EPS
            recalls.append(len({int(h.id[1:]) for h in hits} & set(exact_topk(data, data[qi], 10)[0].tolist())) / 10)
            assert hits[0].id == f"p{qi}"  # the query itself, at cosine 1, is found on every engine setting
        if quantization != "binary":  # 1 bit x 48 dims is too coarse to promise recall; bench_scale measures it at 384/512
            assert np.mean(recalls) >= 0.9
    finally:
        store.close()


def test_edge_keeps_options_across_restart(tmp_path):
    opts = VectorOptions("binary", oversampling=4.0, hnsw_m=12, hnsw_ef=48)
    store = _edge(tmp_path / "idx")
    store.create_collection("c", DIM, "space-a", "m-1", vectors=opts)
    fill(store, "c", clustered(50, DIM))
    store.close()
    store = _edge(tmp_path / "idx")
    try:
        assert store.describe("c").vectors == opts
        assert store._search_params(opts).hnsw_ef == 48  # the collection's beam width reaches the engine's search
        assert store.get_collection("c").vectors == opts and store.get_collection("c").count == 50
        assert store.search("c", clustered(50, DIM)[5], top_k=1)[0].id == "p5"
    finally:
        store.close()


def test_qdrant_local_mode_refuses_what_it_cannot_do():
    store = QdrantIndexStore(QdrantClient(":memory:"))
    try:
        for opts in (VectorOptions("int8"), VectorOptions(on_disk=True), VectorOptions(hnsw_m=8)):
            with pytest.raises(InvalidRequest, match="local mode") as err:
                store.create_collection("c", DIM, "space-a", "m-1", vectors=opts)
            assert err.value.code.value == "invalid_request"
        assert store.list_collections() == []  # nothing half-created
        store.create_collection("c", DIM, "space-a", "m-1", vectors=VectorOptions())
        assert store.describe("c").vectors == VectorOptions()
    finally:
        store.close()


def test_qdrant_server_gets_the_options_as_collection_config():
    """What a Qdrant server is sent (the same shape Edge persists); accepted by qdrant-client's models and client."""
    cfg = qdrant_collection_config(DIM, VectorOptions("int8", oversampling=2.5, on_disk=True, hnsw_m=8, hnsw_ef_construct=64))
    assert cfg["vectors_config"] == m.VectorParams(size=DIM, distance=m.Distance.COSINE, on_disk=True)
    assert cfg["hnsw_config"] == m.HnswConfigDiff(m=8, ef_construct=64, on_disk=True)
    scalar = cfg["quantization_config"].scalar
    assert scalar.type == m.ScalarType.INT8 and scalar.always_ram is True and scalar.quantile == 0.99
    assert isinstance(qdrant_collection_config(DIM, VectorOptions("binary"))["quantization_config"], m.BinaryQuantization)
    assert set(qdrant_collection_config(DIM, VectorOptions())) == {"vectors_config"}  # default: exactly the old call
    params = qdrant_search_params(VectorOptions("int8", oversampling=2.5))
    assert params.quantization.rescore is True and params.quantization.oversampling == 2.5
    assert qdrant_search_params(VectorOptions()) is None
    wide = qdrant_search_params(VectorOptions(hnsw_ef=256))  # a wider beam alone, for recall on a large float collection
    assert wide.hnsw_ef == 256 and wide.quantization is None
    assert qdrant_search_params(VectorOptions("int8", hnsw_ef=256)).hnsw_ef == 256
    assert qdrant_search_params(VectorOptions(), default_ef=200).hnsw_ef == 200  # the server's index.hnsw_ef
    assert qdrant_search_params(VectorOptions(hnsw_ef=48), default_ef=200).hnsw_ef == 48  # the collection's own wins
    # As a remote store would send them (local=False skips the local-mode refusal); the client accepts every call.
    client = QdrantClient(":memory:")
    sent: list[tuple[tuple, dict]] = []
    create = client.create_collection
    client.create_collection = lambda *a, **kw: sent.append((a, kw)) or create(*a, **kw)  # record what a server would get
    store = QdrantIndexStore(client, local=False, shards=3, replication_factor=2, hnsw_ef=200)
    searched: list[dict] = []
    query_points = client.query_points
    client.query_points = lambda *a, **kw: searched.append(kw) or query_points(*a, **kw)
    try:
        store.create_collection("c", DIM, "space-a", "m-1", vectors=VectorOptions("binary", on_disk=True, hnsw_m=8))
        user = [kw for args, kw in sent if args[:1] == ("c",) or kw.get("collection_name") == "c"]
        assert len(user) == 1 and user[0]["shard_number"] == 3 and user[0]["replication_factor"] == 2 and user[0]["hnsw_config"].m == 8
        assert isinstance(user[0]["quantization_config"], m.BinaryQuantization) and user[0]["vectors_config"].on_disk is True
        hidden = [kw for args, kw in sent if (args[:1] or (kw.get("collection_name"),))[0].startswith("_")]
        assert hidden and all(kw["replication_factor"] == 2 and "shard_number" not in kw for kw in hidden)  # omnivec's own state is replicated too
        fill(store, "c", clustered(20, DIM))
        with pytest.warns(UserWarning, match="search_params"):  # local mode says it ignores them: they were passed
            assert store.search("c", clustered(20, DIM)[3], top_k=1)[0].id == "p3"
        assert searched[-1]["search_params"].hnsw_ef == 200 and searched[-1]["search_params"].quantization.rescore is True
        assert store.describe("c").vectors == VectorOptions("binary", on_disk=True, hnsw_m=8)
    finally:
        store.close()



def test_the_servers_default_search_beam_reaches_edge_searches(tmp_path):
    """`index.hnsw_ef` (the beam of collections that set none) is what Edge searches with: on a sparse
    graph a beam of 4 misses neighbours that 256 finds, and a collection's own `hnsw.ef` wins."""
    from omnivec.server.index import open_store
    from omnivec.server.settings import Settings

    wired = open_store(Settings(data_dir=tmp_path / "wired", index={"hnsw_ef": 77}))
    assert wired._search_params(VectorOptions()).hnsw_ef == 77 and wired._search_params(VectorOptions(hnsw_ef=9)).hnsw_ef == 9
    wired.close()
    assert Settings().index.hnsw_ef == 256
    data = clustered(3000, DIM, k=4, seed=5)
    queries = data[::75] + 0.05 * clustered(40, DIM, k=4, seed=6)  # near stored points, not on them
    truth = [set(exact_topk(data, q, 10)[0].tolist()) for q in queries]
    build = _edge(tmp_path / "idx", indexing_threshold_kb=50, full_scan_threshold_kb=10)
    try:  # one sparse graph per collection, built once: every beam below searches the same graphs
        for name, own in (("c", None), ("own", 256)):
            build.create_collection(name, DIM, "space-a", "m-1", vectors=VectorOptions(hnsw_ef=own, hnsw_m=6, hnsw_ef_construct=16))
            fill(build, name, data)
            build.optimize(name)
    finally:
        build.close()
    recall: dict[str, float] = {}
    found: dict[str, list[set[int]]] = {}
    for beam in (4, 256):
        store = _edge(tmp_path / "idx", hnsw_ef=beam)  # the same shards, reopened with another server default
        try:
            for name in ("c", "own"):
                found[f"{name}@{beam}"] = [{int(h.id[1:]) for h in store.search(name, q, top_k=10)} for q in queries]
                recall[f"{name}@{beam}"] = float(np.mean([len(f & t) / 10 for f, t in zip(found[f"{name}@{beam}"], truth)]))
        finally:
            store.close()
    assert recall["c@4"] < 0.9 and recall["c@256"] >= recall["c@4"] + 0.15, recall  # the default reaches the search
    assert found["own@4"] == found["own@256"], "a collection's own hnsw.ef is used whatever the server's default"
    assert recall["own@4"] >= recall["c@4"] + 0.15, recall
