"""Scale benchmark: one node, N items, per quantisation and vector length, searched over HTTP.

For synthetic clustered vectors (a Gaussian mixture, like real embeddings) of each model dim
(default 384, the default model's, and 512) and for each collection setting
(quantization none | int8 | binary) x (dimensions = the model dim | half of it), it measures:

* build: upsert time (the store, in-process) + HNSW build time (`optimize`, in the child process),
  and the child's peak memory (`build_child_anon_gib_<n>_<setting>`: anonymous, i.e. not page cache),
* disk (the collection directory) and RSS of an `omnivec serve` process holding only that collection,
  after the searches (`index_rss` = minus the RSS of the same server with no collection),
* search over HTTP (`query.vector`, top 10; the full-length query is cut by the server to the
  collection's prefix): p50/p99 at 1 connection, p50/p99 and queries/s at 16 connections, filtered
  p50 (a keyword filter of ~10 % selectivity on an indexed payload field),
* recall@10 against exact numpy cosine search on the same stored (prefix) vectors.

Latency growth with size: the int8 setting of the first model dim is built at N/10 and at N in one
data dir and one server, and the same queries alternate between the two collections, so both see
the same machine load; `p50_ms_growth_<n/10>_to_<n>` is the ratio of the two p50s.

Examples::

    python bench/bench_scale.py --quick        # 20k items, ~3 minutes on 2 shared cores (see bench/RESULTS.md)
    python bench/bench_scale.py                # full: 1M items (needs ~16 GiB RAM and hours of HNSW builds on 2 cores)
    python bench/bench_scale.py --n 100000 --model-dims 384 --quantizations int8

The last line is one JSON object. Keys carry the size actually run (`1m`, `100k`, `20k`): e.g.
`p50_ms_1m_int8_http`, `recall_at_10_1m_int8`, `rss_gib_1m_int8` (the model dim, full length),
`build_s_1m` (int8 setting), `p50_ms_growth_100k_to_1m`; ratios against the `none` setting of the
same run: `p50_ratio_<q>_vs_none`, `rss_ratio_<q>_vs_none`.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bundle, dir_bytes, final_json, percentile, proc_memory, sample_peaks  # noqa: E402
from omnivec.server.index import EdgeIndexStore, Point, VectorOptions  # noqa: E402
from omnivec.server_process import ServerProcess  # noqa: E402

GROUPS = 10
FILTER = {"must": [{"key": "g", "match": {"value": "g3"}}]}  # ~1/GROUPS of the items
NAME = "scale"
SMALL = "scale-small"  # the same setting at N/10, for the growth ratio


def parse_setting(spec: str) -> tuple[str, VectorOptions]:
    """`int8`, `binary:8` (oversampling 8), `int8+disk` (on_disk), `int8@ef128` (search beam width 128) -> (row label, options)."""
    spec_no_ef, _, ef = spec.partition("@ef")
    name, disk = spec_no_ef.split("+")[0], spec_no_ef.endswith("+disk")
    quant, _, over = name.partition(":")
    opts = VectorOptions(quant, float(over) if over else None, on_disk=disk, hnsw_ef=int(ef) if ef else None)  # type: ignore[arg-type]
    return spec.replace(":", "_os").replace("+", "_").replace("@", "_"), opts


def size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def clustered(n: int, centres: np.ndarray, spread: float, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around the given centres (within-cluster cosine ~0.8 at spread 0.5), built in
    chunks (1M x 512 float32 is 2 GiB). Queries are drawn the same way, around the same centres."""
    clusters, dim = centres.shape
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = centres[rng.integers(0, clusters, e - s)] + spread * rng.normal(size=(e - s, dim)).astype(np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def prefix(x: np.ndarray, d: int) -> np.ndarray:
    cut = x[:, :d]
    return cut / np.linalg.norm(cut, axis=1, keepdims=True)


def exact_top10(data: np.ndarray, queries: np.ndarray, chunk: int = 200_000) -> list[set[int]]:
    """Exact cosine top 10 per query (data and queries unit length), scanned in chunks."""
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 10), np.int64)
    for s in range(0, len(data), chunk):
        scores = queries @ data[s : s + chunk].T
        top = np.argpartition(-scores, 10, axis=1)[:, :10] if scores.shape[1] > 10 else np.argsort(-scores, axis=1)
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + s], 1)
        keep = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    return [set(row.tolist()) for row in best_i]


def build(root: Path, data: np.ndarray, model_dim: int, dims: int, opts: VectorOptions, progress: str, name: str = NAME) -> dict:
    """A data dir holding a collection `name` of `data` cut to `dims`: upsert + HNSW build, timed."""
    store = EdgeIndexStore(root / "index", indexing_threads=0)
    try:
        store.create_collection(name, dims, "bench", "synthetic", {"model_dim": model_dim}, opts)
        store.create_payload_index(name, "g", "keyword")
        vectors = prefix(data, dims) if dims < model_dim else data
        t = time.perf_counter()
        step = 2000
        for s in range(0, len(vectors), step):
            e = min(len(vectors), s + step)
            store.upsert(name, [Point(str(i), vectors[i], {"g": f"g{i % GROUPS}"}) for i in range(s, e)])
            if s % (step * 50) == 0:
                print(f"  {progress}: {e}/{len(vectors)} upserted", file=sys.stderr, flush=True)
        upsert_s = time.perf_counter() - t
        t = time.perf_counter()
        child: dict[str, int] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_build_child, args=(store, name, stop, child), daemon=True)
        watcher.start()
        try:
            store.optimize(name)
        finally:
            stop.set()
            watcher.join()
        build_s = time.perf_counter() - t
    finally:
        store.close()
    disk = dir_bytes(root / "index" / name)
    return {
        "upsert_s": upsert_s, "hnsw_s": build_s, "build_s": upsert_s + build_s, "disk_gib": disk / 2**30,
        # the optimizer child's peak: anonymous memory is what a build really costs; file-backed is page cache of the copy
        "build_child_anon_gib": child.get("RssAnon", float("nan")) / 2**30, "build_child_rss_gib": child.get("VmRSS", float("nan")) / 2**30,
    }


def _watch_build_child(store: EdgeIndexStore, name: str, stop: threading.Event, peaks: dict[str, int]) -> None:
    """Sample the memory of the Edge optimizer child of collection `name` while its build runs."""
    while not stop.is_set():
        proc = store._collections[name].proc
        if proc is not None:
            sample_peaks(proc.pid, stop, peaks)
            return
        time.sleep(0.01)


def rss_gib(pid: int) -> float:
    rss = proc_memory(pid).get("VmRSS")
    return rss / 2**30 if rss is not None else float("nan")


def search_body(q: np.ndarray, flt: dict | None = None) -> dict:
    body = {"query": {"vector": [round(float(v), 6) for v in q]}, "top_k": 10, "with_payload": False}
    return {**body, "filter": flt} if flt else body


def side_by_side(model: Path, root: Path, queries: np.ndarray, rounds: int = 3) -> tuple[float, float]:
    """p50 ms of the same queries against SMALL and the full collection, alternated in one server
    (so both see the same machine load): the latency growth with size, measured as a ratio."""
    small, big = [], []
    with ServerProcess(model, env={"OMNIVEC_DATA_DIR": str(root), "OMNIVEC_INDEX__OPTIMIZE_AFTER_POINTS": "0"}, log=root / "growth.log") as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            for name in (SMALL, NAME):
                client.post(f"/v1/collections/{name}/search", json=search_body(queries[0])).raise_for_status()  # warm
            for _ in range(rounds):
                for q in queries:
                    for name, out in ((SMALL, small), (NAME, big)):
                        t = time.perf_counter()
                        client.post(f"/v1/collections/{name}/search", json=search_body(q)).raise_for_status()
                        out.append((time.perf_counter() - t) * 1000)
    return percentile(small, 50), percentile(big, 50)


def serial(client: httpx.Client, queries: np.ndarray, flt: dict | None = None) -> tuple[list[float], list[set[int]]]:
    lat, found = [], []
    client.post(f"/v1/collections/{NAME}/search", json=search_body(queries[0], flt))  # warm
    for q in queries:
        t = time.perf_counter()
        r = client.post(f"/v1/collections/{NAME}/search", json=search_body(q, flt))
        lat.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        found.append({int(h["id"]) for h in r.json()["results"]})
    return lat, found


async def concurrent(url: str, queries: np.ndarray, connections: int) -> tuple[list[float], float]:
    lat: list[float] = []
    bodies = [search_body(q) for q in queries]
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=connections)) as client:

        async def worker(k: int) -> None:
            for b in bodies[k::connections]:
                t = time.perf_counter()
                r = await client.post(f"/v1/collections/{NAME}/search", json=b)
                lat.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(connections)))
        return lat, len(bodies) / (time.perf_counter() - t)


def measure(model: Path, root: Path, queries: np.ndarray, truth: list[set[int]], baseline_rss: float, n_conc: int) -> dict:
    with ServerProcess(model, env={"OMNIVEC_DATA_DIR": str(root), "OMNIVEC_INDEX__OPTIMIZE_AFTER_POINTS": "0"}, log=root / "server.log") as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            lat, found = serial(client, queries)
            flat, _ = serial(client, queries[: max(20, len(queries) // 2)], FILTER)
        clat, qps = asyncio.run(concurrent(srv.url, np.concatenate([queries] * max(1, n_conc // len(queries))), 16))
        rss = rss_gib(srv.proc.pid)
    recall = float(np.mean([len(f & t) / 10 for f, t in zip(found, truth)]))
    return {
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "p50_ms_c16": percentile(clat, 50), "p99_ms_c16": percentile(clat, 99),
        "qps_c16": qps, "filtered_p50_ms": percentile(flat, 50), "recall_at_10": recall, "rss_gib": rss, "index_rss_gib": rss - baseline_rss,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k items, 100 queries (a few minutes on 2 shared cores)")
    ap.add_argument("--n", type=int, default=None, help="items per collection (default 1000000; quick 20000)")
    ap.add_argument("--model-dims", default="384,512", help="comma list of model dims (default 384 = omnivec-mini, and 512)")
    ap.add_argument(
        "--quantizations", default="none,int8,binary",
        help="comma list of settings: none, int8, binary, optionally :OVERSAMPLING, +disk (on_disk) and @efN (search beam width), e.g. binary:8,int8+disk,int8@ef128",
    )
    ap.add_argument("--queries", type=int, default=None, help="queries per setting (default 300; quick 100)")
    ap.add_argument("--clusters", type=int, default=200, help="mixture components (default 200)")
    ap.add_argument("--spread", type=float, default=0.5, help="per-dimension noise around a centre (default 0.5)")
    ap.add_argument("--lengths", default="full,half", help="collection dimensions per model dim: full and/or half (default both)")
    ap.add_argument("--no-growth", action="store_true", help="skip the N/10 build that measures latency growth")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.n or (20_000 if args.quick else 1_000_000)
    n_queries = args.queries or (100 if args.quick else 300)
    quants = [q.strip() for q in args.quantizations.split(",") if q.strip()]
    model = bundle("omnivec-tiny", int8=False)  # only serves the HTTP API: queries are raw vectors
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    figures: dict = {"n_items": n, "queries": n_queries, "cpus": os.cpu_count()}
    label = size_label(n)
    rows = []
    try:
        empty = tmp / "empty"
        with ServerProcess(model, env={"OMNIVEC_DATA_DIR": str(empty)}, log=tmp / "empty.log") as srv:
            httpx.post(f"{srv.url}/v1/embed", json={"texts": ["warm"]}, timeout=30)
            baseline_rss = rss_gib(srv.proc.pid)
        figures["server_rss_gib_empty"] = baseline_rss
        for model_dim in [int(d) for d in args.model_dims.split(",")]:
            centres = rng.normal(size=(args.clusters, model_dim)).astype(np.float32)
            data = clustered(n, centres, args.spread, rng)
            queries = clustered(n_queries, centres, args.spread, rng)  # held out: not in the collection
            lengths = [x.strip() for x in args.lengths.split(",")]
            for dims in [d for d, key in ((model_dim, "full"), (model_dim // 2, "half")) if key in lengths]:
                truth = exact_top10(prefix(data, dims), prefix(queries, dims))
                for spec in quants:
                    quant, opts = parse_setting(spec)
                    tag = f"d{model_dim}_{dims}_{quant}"
                    root = tmp / tag
                    row = {"model_dim": model_dim, "dims": dims, "quantization": quant}
                    row.update(build(root, data, model_dim, dims, opts, tag))
                    row.update(measure(model, root, queries, truth, baseline_rss, 16 * 20))
                    shutil.rmtree(root, ignore_errors=True)
                    rows.append(row)
                    print("  " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
            if not args.no_growth and model_dim == int(args.model_dims.split(",")[0]):
                quant = "int8" if "int8" in quants else quants[0]
                small = n // 10
                root = tmp / "growth"
                build(root, data[:small], model_dim, model_dim, parse_setting(quant)[1], f"growth {small}", name=SMALL)
                build(root, data, model_dim, model_dim, parse_setting(quant)[1], f"growth {n}")
                p50_small, p50_big = side_by_side(model, root, queries[: min(len(queries), 100)])
                shutil.rmtree(root, ignore_errors=True)
                figures[f"p50_ms_{size_label(small)}_{quant}_http_side_by_side"] = p50_small
                figures[f"p50_ms_{label}_{quant}_http_side_by_side"] = p50_big
                figures[f"p50_ms_growth_{size_label(small)}_to_{label}"] = p50_big / p50_small
            del data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| model dim | dims | quantization | build s (upsert + HNSW) | disk GiB | server RSS GiB | p50 ms | p99 ms | p50/p99 ms @16 | qps @16 | filtered p50 ms | recall@10 |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(
            f"| {r['model_dim']} | {r['dims']} | {r['quantization']} | {r['build_s']:.1f} ({r['upsert_s']:.1f} + {r['hnsw_s']:.1f}) | {r['disk_gib']:.3f} | "
            f"{r['rss_gib']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p50_ms_c16']:.1f}/{r['p99_ms_c16']:.1f} | {r['qps_c16']:.0f} | "
            f"{r['filtered_p50_ms']:.2f} | {r['recall_at_10']:.3f} |",
            file=sys.stderr,
        )
    main_dim = int(args.model_dims.split(",")[0])
    for r in rows:
        if r["model_dim"] != main_dim:
            continue
        q = r["quantization"] + ("" if r["dims"] == main_dim else f"_d{r['dims']}")
        figures[f"p50_ms_{label}_{q}_http"] = r["p50_ms"]
        figures[f"p99_ms_{label}_{q}_http"] = r["p99_ms"]
        figures[f"p50_ms_{label}_{q}_http_c16"] = r["p50_ms_c16"]
        figures[f"filtered_p50_ms_{label}_{q}_http"] = r["filtered_p50_ms"]
        figures[f"recall_at_10_{label}_{q}"] = r["recall_at_10"]
        figures[f"rss_gib_{label}_{q}"] = r["rss_gib"]
        figures[f"disk_gib_{label}_{q}"] = r["disk_gib"]
        figures[f"build_child_anon_gib_{label}_{q}"] = r["build_child_anon_gib"]
        build_label = next((parse_setting(s)[0] for s in quants if s.startswith("int8")), parse_setting(quants[0])[0])  # the int8 row's label
        if r["dims"] == main_dim and r["quantization"] == build_label:
            figures[f"build_s_{label}"] = r["build_s"]
    base = next((r for r in rows if r["model_dim"] == main_dim and r["dims"] == main_dim and r["quantization"] == "none"), None)
    if base:
        for r in rows:
            if r["model_dim"] == main_dim and r["dims"] == main_dim and r["quantization"] != "none":
                figures[f"p50_ratio_{r['quantization']}_vs_none"] = r["p50_ms"] / base["p50_ms"]
                figures[f"rss_ratio_{r['quantization']}_vs_none"] = r["index_rss_gib"] / max(base["index_rss_gib"], 1e-9)
    figures["model_dims"] = args.model_dims
    final_json(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
