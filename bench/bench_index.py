"""Benchmark the index layer: search latency and recall for both IndexStore engines.

For N clustered vectors (a Gaussian mixture, like real embeddings, not uniform noise) of dimension D
it measures, per engine:

* upsert time,
* search latency p50/p99 (top 10) without and with a payload filter (~10 % selectivity), for Edge
  both without and with a keyword payload index on the filtered field ("+idx"),
* Edge: brute force (before optimize) and HNSW (after optimize), the optimize time, and search
  latency *while* optimize runs (the store builds the index in a child process),
* recall@10 against exact numpy cosine search.

qdrant-client's local mode (":memory:") has no HNSW: it is always an exact numpy scan, so only its
brute-force rows exist (a real Qdrant server builds HNSW in the background; not measured here).

Examples::

    python bench/bench_index.py --quick          # ~1 minute: 20k vectors
    python bench/bench_index.py                  # full: 100k vectors (HNSW build takes minutes)
    python bench/bench_index.py --n 50000 --dim 768 --engines edge

The last line of output is one JSON object with the figures (keys ending in `_100k` carry the
figure at the size actually run; `n_vectors` says which). `edge_p50_ms_100k` is HNSW after
optimize, unfiltered; `edge_filtered_p50_ms_100k` is HNSW with the filter on an indexed field
(`edge_filtered_noindex_p50_ms_100k`: the same without the payload index); `recall_at_10` is
Edge HNSW against exact numpy search.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # 1 thread everywhere
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from omnivec.server.index import Point  # noqa: E402

N_CATEGORIES = 10
FILTER = {"must": [{"key": "cat", "match": {"value": "c3"}}]}  # ~1/N_CATEGORIES of the points


def gaussian_mixture(centres: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors around random centres; within-cluster cosine ~0.7 with spread 0.6 at dim 512."""
    k, dim = centres.shape
    labels = rng.integers(0, k, n)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 10_000):  # bounded chunks keep peak memory low
        e = min(n, s + 10_000)
        x = centres[labels[s:e]] + spread * rng.normal(size=(e - s, dim)).astype(np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top10(data: np.ndarray, queries: np.ndarray, mask: np.ndarray | None = None) -> list[set[int]]:
    out = []
    for q in queries:
        s = data @ q
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        out.append(set(np.argpartition(-s, 10)[:10].tolist()))
    return out


def measure(search, queries: np.ndarray, flt, max_queries: int, budget_s: float, truth=None):
    """Latency percentiles (ms) over at most max_queries or budget_s, plus recall@10 if truth given."""
    lat, recalls = [], []
    t_end = time.perf_counter() + budget_s
    for i in range(min(max_queries, len(queries))):
        t = time.perf_counter()
        hits = search(queries[i], flt)
        lat.append((time.perf_counter() - t) * 1000)
        if truth is not None:
            got = {int(h.id) for h in hits}
            recalls.append(len(got & truth[i]) / 10)
        if time.perf_counter() > t_end:
            break
    a = np.array(lat)
    return {
        "queries": len(lat),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "recall_at_10": float(np.mean(recalls)) if recalls else None,
    }


def load(store, data: np.ndarray, batch: int = 1000) -> float:
    store.create_collection("bench", data.shape[1], space_id="bench", model="synthetic")
    t = time.perf_counter()
    for s in range(0, len(data), batch):
        e = min(len(data), s + batch)
        store.upsert(
            "bench",
            [Point(str(i), data[i], {"cat": f"c{i % N_CATEGORIES}", "year": 2000 + i % 25}) for i in range(s, e)],
        )
    return time.perf_counter() - t


def bench_edge(args, data, queries, truth, truth_f, rows, out) -> None:
    from omnivec.server.index import EdgeIndexStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    store = EdgeIndexStore(
        tmp,
        search_threads=1,
        indexing_threads=args.indexing_threads,
        hnsw_ef=args.hnsw_ef,
        optimize_timeout_s=args.optimize_timeout,
    )
    try:
        out["edge_upsert_s"] = round(load(store, data), 3)

        def search(q, flt):
            return store.search("bench", q, top_k=10, filter=flt, with_payload=False)

        def row(index: str, label: str, flt, tr, key: str | None) -> dict:
            r = measure(search, queries, flt, args.queries, args.budget, tr)
            rows.append(("edge", index, label, r))
            if key:
                out[f"{key}_p50_ms"], out[f"{key}_p99_ms"] = round(r["p50_ms"], 3), round(r["p99_ms"], 3)
            return r

        row("brute force", "none", None, truth, "edge_bruteforce")
        row("brute force", "cat=c3", FILTER, truth_f, "edge_bruteforce_filtered_noindex")
        # A keyword payload index on the filtered field, created before optimize() as recommended.
        store.create_payload_index("bench", "cat", "keyword")
        row("brute force", "cat=c3 +idx", FILTER, truth_f, "edge_bruteforce_filtered")

        # optimize() in a worker thread; meanwhile keep searching (bounded) to show it does not block.
        done = threading.Event()
        err: list[BaseException] = []

        def run_optimize():
            try:
                store.optimize("bench")
            except BaseException as e:  # reported below
                err.append(e)
            finally:
                done.set()

        t0 = time.perf_counter()
        th = threading.Thread(target=run_optimize, daemon=True)
        th.start()
        during = []
        i = 0
        while not done.is_set() and len(during) < 100_000:
            t = time.perf_counter()
            search(queries[i % len(queries)], None)
            during.append((time.perf_counter() - t) * 1000)
            i += 1
            time.sleep(0.02)  # a steady trickle of queries, as a live server would see
        th.join(timeout=args.optimize_timeout)
        out["edge_optimize_s"] = round(time.perf_counter() - t0, 2)
        if err:
            raise err[0]
        out["edge_searches_during_optimize"] = len(during)
        if during:
            out["edge_p50_ms_during_optimize"] = round(float(np.percentile(during, 50)), 3)
            out["edge_max_ms_during_optimize"] = round(float(np.max(during)), 3)
        info = store._collections["bench"].shard.info()
        out["edge_indexed_vectors"] = int(info.indexed_vectors_count)
        out["edge_segments"] = int(info.segments_count)

        r = row("HNSW (after optimize)", "none", None, truth, None)
        out["edge_p50_ms_100k"], out["edge_p99_ms_100k"] = round(r["p50_ms"], 3), round(r["p99_ms"], 3)
        out["recall_at_10"] = round(r["recall_at_10"], 4)
        r = row("HNSW (after optimize)", "cat=c3 +idx", FILTER, truth_f, None)
        out["edge_filtered_p50_ms_100k"], out["edge_filtered_p99_ms_100k"] = round(r["p50_ms"], 3), round(r["p99_ms"], 3)
        out["edge_filtered_recall_at_10"] = round(r["recall_at_10"], 4)
        # The same filter once the payload index is dropped (what an unindexed field costs).
        import qdrant_edge as qe

        with store._writing("bench") as coll:
            coll.shard.update(qe.UpdateOperation.delete_field_index("cat"))
        r = row("HNSW (after optimize)", "cat=c3", FILTER, truth_f, None)
        out["edge_filtered_noindex_p50_ms_100k"] = round(r["p50_ms"], 3)
        out["edge_filtered_noindex_recall_at_10"] = round(r["recall_at_10"], 4)
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_qdrant_local(args, data, queries, truth, truth_f, rows, out) -> None:
    from qdrant_client import QdrantClient

    from omnivec.server.index import QdrantIndexStore

    store = QdrantIndexStore(QdrantClient(":memory:"))
    try:
        out["qdrant_local_upsert_s"] = round(load(store, data, batch=2000), 3)

        def search(q, flt):
            return store.search("bench", q, top_k=10, filter=flt, with_payload=False)

        for label, flt, tr in (("none", None, truth), ("cat=c3", FILTER, truth_f)):
            # the local mode evaluates filters in Python per point: fewer queries, same time budget
            r = measure(search, queries, flt, args.queries if flt is None else max(5, args.queries // 10), args.budget, tr)
            rows.append(("qdrant-client local", "exact scan (no HNSW)", label, r))
            key = "qdrant_local" + ("_filtered" if flt else "")
            out[f"{key}_p50_ms"], out[f"{key}_p99_ms"] = round(r["p50_ms"], 3), round(r["p99_ms"], 3)
            out[f"{key}_recall_at_10"] = round(r["recall_at_10"], 4)
        out["qdrant_local_hnsw"] = False
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (~1 minute): 20k vectors, fewer queries")
    ap.add_argument("--n", type=int, default=None, help="number of vectors (default: 100000, quick: 20000)")
    ap.add_argument("--dim", type=int, default=512, help="vector dimension (default 512)")
    ap.add_argument("--queries", type=int, default=None, help="queries per configuration (default 300, quick 150)")
    ap.add_argument("--clusters", type=int, default=100, help="Gaussian mixture components (default 100)")
    ap.add_argument("--spread", type=float, default=0.6, help="per-dimension noise around a centre (default 0.6)")
    ap.add_argument("--engines", default="edge,qdrant", help="comma list from: edge, qdrant (default both)")
    ap.add_argument("--indexing-threads", type=int, default=1, help="HNSW build threads for Edge (default 1)")
    ap.add_argument("--hnsw-ef", type=int, default=None, help="Edge search beam width (default: engine's)")
    ap.add_argument("--budget", type=float, default=None, help="max seconds per latency measurement (default 30, quick 8)")
    ap.add_argument("--optimize-timeout", type=float, default=1800, help="give up on optimize after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.n or (20_000 if args.quick else 100_000)
    args.queries = args.queries or (150 if args.quick else 300)
    args.budget = args.budget or (8.0 if args.quick else 30.0)
    engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    unknown = engines - {"edge", "qdrant"}
    if unknown:
        ap.error(f"unknown engines {sorted(unknown)}")

    t_all = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.clusters, args.dim)).astype(np.float32)
    data = gaussian_mixture(centres, n, args.spread, rng)
    queries = gaussian_mixture(centres, args.queries, args.spread, rng)  # fresh samples, same mixture
    mask = (np.arange(n) % N_CATEGORIES) == 3
    truth = exact_top10(data, queries)
    truth_f = exact_top10(data, queries, mask)
    print(f"data: {n} x {args.dim} Gaussian mixture ({args.clusters} clusters, spread {args.spread}); "
          f"{args.queries} queries; filter {json.dumps(FILTER)} keeps {mask.mean():.0%}", flush=True)

    rows: list[tuple] = []
    out: dict = {"n_vectors": n, "dim": args.dim, "mode": "quick" if args.quick else "full",
                 "indexing_threads": args.indexing_threads, "search_threads": 1}
    if "edge" in engines:
        bench_edge(args, data, queries, truth, truth_f, rows, out)
        gc.collect()
    if "qdrant" in engines:
        bench_qdrant_local(args, data, queries, truth, truth_f, rows, out)
        gc.collect()

    print()
    head = f"{'engine':<20} {'index':<22} {'filter':<12} {'queries':>7} {'p50 ms':>9} {'p99 ms':>9} {'recall@10':>9}"
    print(head)
    print("-" * len(head))
    for eng, idx, flt, r in rows:
        rec = "-" if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}"
        print(f"{eng:<20} {idx:<22} {flt:<12} {r['queries']:>7} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {rec:>9}")
    print()
    for k in ("edge_upsert_s", "edge_optimize_s", "edge_searches_during_optimize", "edge_p50_ms_during_optimize",
              "edge_max_ms_during_optimize", "edge_indexed_vectors", "qdrant_local_upsert_s"):
        if k in out:
            print(f"{k:<32} {out[k]}")
    if "qdrant" in engines:
        print("note: qdrant-client local mode has no HNSW index; its rows are exact scans in Python/numpy.")
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
