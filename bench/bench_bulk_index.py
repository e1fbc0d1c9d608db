"""Bulk indexing through the SDK (`Client.add`, what `omnivec index` runs) against the model's own throughput.

`omnivec serve` runs in a child process (omnivec-tiny, 1 model thread, Edge index in a temp data dir).
The same short texts are sent in the same batches to

  embed    POST /v1/embed (base64 vectors), `--connections` requests in flight: the model-only throughput
  add c=1  Client.add(..., concurrency=1): one request at a time (the SDK before concurrency)
  add c=N  Client.add(...) at the SDK's default concurrency
  add c=N, no media   the same into a collection created with keep_media=false (no preview/original files)

in rotating order over several rounds (each add into a fresh collection); ratios are paired per round
(adjacent in time, so load from other processes cancels out) and the median is reported:
`add_over_embed_c1`, `add_over_embed_default` (1.0 = indexing sustains the model's throughput).

Resume: a collection of `--resume-items` is indexed, then the same job runs again with
skip_existing=True (everything already stored): seconds per 100k skipped ids, with growing slices
(now) and with one /items/exists call per batch (before), same run.

Scale (`--n N`, not in --quick): one job of N texts from a generator at the default concurrency while
a thread searches (`--search-qps`), items/s per tenth of the job, search p50/p99 during the job,
server RSS (with its optimizer child) sampled every 0.2 s, the peak during a final index build against
the collection's float32 vectors (RSS counts the page cache the server and child map, too), and the
resume time over all N.

    .venv/bin/python bench/bench_bulk_index.py --quick              # about a minute
    .venv/bin/python bench/bench_bulk_index.py --quick --n 300000   # plus the scale run

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bundle, final_json, percentile, post_all, proc_memory  # noqa: E402

WORDS = "red green blue dog cat car tree house river mountain photo of a the small large old new street beach".split()


def texts(count: int, offset: int = 0) -> list[str]:
    """Distinct short captions (a number keeps them distinct: content ids differ)."""
    return [f"{WORDS[i % 19]} {WORDS[(i // 19) % 19]} {WORDS[(i // 361) % 19]} number {i}" for i in range(offset, offset + count)]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (the Edge optimizer child), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += proc_memory(p)["VmRSS"]
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, KeyError):
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self.last = pid, every_s, 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.last = rss_bytes(self.pid)
            self.peak = max(self.peak, self.last)
            time.sleep(self.every_s)

    def reset_peak(self) -> None:
        self.peak = self.last


def embed_rate(url: str, data: list[str], batch: int, connections: int) -> float:
    bodies = [{"inputs": [{"text": t} for t in data[i : i + batch]], "encoding": "base64"} for i in range(0, len(data), batch)]
    return asyncio.run(post_all(url, "/v1/embed", bodies, connections))


def add_rate(url: str, name: str, data: list[str], batch: int, concurrency: int, keep_media: bool = True) -> float:
    from omnivec_client import Client, Item

    with Client(url, batch_size=batch, concurrency=concurrency) as omni:
        omni.create_collection(name, keep_media=keep_media)
        start = time.perf_counter()
        result = omni.add(name, (Item(text=t) for t in data))
        rate = len(data) / (time.perf_counter() - start)
        if result.indexed != len(data) or result.errors:
            raise RuntimeError(f"{name}: indexed {result.indexed} of {len(data)}, errors {result.errors[:2]}")
        omni.delete_collection(name)
    return rate


def throughput(url: str, args: argparse.Namespace, default_c: int) -> dict:
    data = texts(args.items)
    embed_rate(url, data[: args.batch * 4], args.batch, args.connections)  # warm-up
    phases = ["embed", "c1", "cN", "cN-no-media"]
    rates: dict[str, list[float]] = {p: [] for p in phases}
    for r in range(args.rounds):
        for phase in phases[r % 4 :] + phases[: r % 4]:
            if phase == "embed":
                rates[phase].append(embed_rate(url, data, args.batch, args.connections))
            else:
                concurrency = 1 if phase == "c1" else default_c
                rates[phase].append(add_rate(url, f"tp-{phase}-{r}", data, args.batch, concurrency, keep_media=phase != "cN-no-media"))
        print(f"  round {r}: " + ", ".join(f"{p} {rates[p][-1]:.0f}/s" for p in phases), file=sys.stderr, flush=True)
    return {
        "embed_items_s": statistics.median(rates["embed"]),
        "add_items_s_c1": statistics.median(rates["c1"]),
        "add_items_s_default": statistics.median(rates["cN"]),
        "add_over_embed_c1": statistics.median([a / e for a, e in zip(rates["c1"], rates["embed"])]),
        "add_over_embed_default": statistics.median([a / e for a, e in zip(rates["cN"], rates["embed"])]),
        "add_items_s_default_no_media": statistics.median(rates["cN-no-media"]),
        "add_over_embed_default_no_media": statistics.median([a / e for a, e in zip(rates["cN-no-media"], rates["embed"])]),
        "default_over_c1": statistics.median([n / one for n, one in zip(rates["cN"], rates["c1"])]),
    }


def resume_seconds(url: str, name: str, data: list[str], batch: int, per_batch: bool = False) -> float:
    """Seconds for add(skip_existing=True) over items all stored already; per_batch: one exists call per batch (before)."""
    from omnivec_client import Client, Item, bulk

    saved = bulk.RESUME_SLICE
    bulk.RESUME_SLICE = batch if per_batch else saved
    try:
        with Client(url, batch_size=batch) as omni:
            start = time.perf_counter()
            result = omni.add(name, (Item(text=t) for t in data), skip_existing=True)
            seconds = time.perf_counter() - start
    finally:
        bulk.RESUME_SLICE = saved
    if result.skipped != len(data):
        raise RuntimeError(f"resume skipped {result.skipped} of {len(data)}")
    return seconds


def resume(url: str, args: argparse.Namespace) -> dict:
    from omnivec_client import Client, Item

    data = texts(args.resume_items, offset=10_000_000)
    with Client(url, batch_size=args.batch) as omni:
        omni.create_collection("resume")
        omni.add("resume", (Item(text=t) for t in data))
    grown = resume_seconds(url, "resume", data, args.batch)
    per_batch = resume_seconds(url, "resume", data, args.batch, per_batch=True)
    return {
        "resume_items": len(data),
        "resume_s_per_100k": grown * 100_000 / len(data),
        "resume_s_per_100k_per_batch_exists": per_batch * 100_000 / len(data),
        "resume_speedup": per_batch / grown,
    }


def wait_build(url: str, name: str, timeout_s: float = 1800) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/collections/{name}", timeout=30).json()
        if not info["indexing"]["building"]:
            return info
        time.sleep(0.5)
    raise TimeoutError(f"the index build of {name} did not finish in {timeout_s} s")


def scale(url: str, pid: int, args: argparse.Namespace) -> dict:
    from omnivec_client import Client, Item

    name, n = "scale", args.n
    marks: list[tuple[int, float]] = []
    stop = threading.Event()
    latencies: list[float] = []
    failures = 0

    def source():
        start = time.perf_counter()
        for i, text in enumerate(texts(n)):
            if i % (n // 10) == 0:
                marks.append((i, time.perf_counter() - start))
            yield Item(text=text, payload={"i": i})
        marks.append((n, time.perf_counter() - start))

    def searcher() -> None:
        nonlocal failures
        with httpx.Client(base_url=url, timeout=30) as http:
            k = 0
            while not stop.is_set():
                t = time.perf_counter()
                r = http.post(f"/v1/collections/{name}/search", json={"query": {"text": f"a small dog number {k}"}, "top_k": 10})
                latencies.append(time.perf_counter() - t)
                failures += r.status_code != 200
                k += 1
                stop.wait(max(0.0, 1 / args.search_qps - (time.perf_counter() - t)))

    sampler = RssSampler(pid)
    sampler.start()
    with Client(url, batch_size=args.batch, timeout_s=120) as omni:
        omni.create_collection(name, keep_media=args.scale_keep_media)
        dim = omni.get_collection(name).dim
        thread = threading.Thread(target=searcher, daemon=True)
        thread.start()
        started = time.perf_counter()
        result = omni.add(name, source(), progress=args.progress, total=n)
        seconds = time.perf_counter() - started
        stop.set()
        thread.join()
        if result.indexed != n or result.errors:
            raise RuntimeError(f"scale: indexed {result.indexed} of {n}, errors {result.errors[:2]}")
        rss_after_add = rss_bytes(pid)
        peak_during_add = sampler.peak
        rates = [(b - a) / (tb - ta) for (a, ta), (b, tb) in zip(marks, marks[1:]) if tb > ta]
        print(f"  job: {n / seconds:.0f} items/s, by tenth {[round(r) for r in rates]}, searches {len(latencies)} "
              f"p50 {percentile([x * 1000 for x in latencies], 50):.1f} ms p99 {percentile([x * 1000 for x in latencies], 99):.1f} ms, "
              f"failures {failures}, RSS {rss_after_add / 2**30:.2f} GiB (peak {peak_during_add / 2**30:.2f})", file=sys.stderr, flush=True)
        sampler.reset_peak()
        build_s, build_peak, idle = None, 0, rss_after_add
        if args.scale_build:  # the build that indexes the whole collection: the background one still running, else one started now
            if not httpx.get(f"{url}/v1/collections/{name}", timeout=30).json()["indexing"]["building"]:
                httpx.post(f"{url}/v1/collections/{name}/optimize", timeout=30).raise_for_status()
            info = wait_build(url, name)
            build_peak = sampler.peak
            build_s = info["indexing"]["last_build_s"]
            time.sleep(2)
            idle = rss_bytes(pid)
        if build_peak:
            print(f"  build: {build_s} s, peak RSS {build_peak / 2**30:.2f} GiB, after {idle / 2**30:.2f} GiB", file=sys.stderr, flush=True)
        resume_s = resume_seconds(url, name, texts(n), args.batch)
    sampler.stopped.set()
    vectors = n * dim * 4
    return {
        "scale_items": n,
        "scale_keep_media": args.scale_keep_media,
        "scale_dim": dim,
        "scale_items_s": n / seconds,
        "scale_items_s_by_tenth": [round(r, 1) for r in rates],
        "scale_last_over_first_tenth": rates[-1] / rates[0],
        "scale_search_p50_ms": percentile([x * 1000 for x in latencies], 50),
        "scale_search_p99_ms": percentile([x * 1000 for x in latencies], 99),
        "scale_searches": len(latencies),
        "scale_search_failures": failures,
        "scale_vectors_gib": vectors / 2**30,
        "scale_rss_gib_after_add": rss_after_add / 2**30,
        "scale_rss_gib_peak_during_add": peak_during_add / 2**30,
        "scale_rss_gib_idle_after_build": idle / 2**30,
        "scale_rss_gib_peak_build": build_peak / 2**30 if build_peak else None,
        "scale_build_extra_over_idle": build_peak / idle - 1 if build_peak else None,
        "scale_build_s": build_s,
        "scale_resume_s": resume_s,
        "scale_resume_s_per_100k": resume_s * 100_000 / n,
    }


def main() -> None:
    from omnivec.server_process import ServerProcess
    from omnivec_client.bulk import DEFAULT_CONCURRENCY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds (about a minute on 2 cores)")
    parser.add_argument("--items", type=int, help="items per throughput phase (default 2000 quick, 10000 full)")
    parser.add_argument("--rounds", type=int, help="rotating embed / add c=1 / add c=N rounds, median taken (default 3 quick, 5 full)")
    parser.add_argument("--model", default="omnivec-tiny", help="bundle to serve (exported once into data/bench; default omnivec-tiny)")
    parser.add_argument("--batch", type=int, default=64, help="items per request and server max batch (default 64, the SDK's)")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONCURRENCY, help="embed baseline: requests in flight (default: the SDK's concurrency)")
    parser.add_argument("--resume-items", type=int, help="items stored before the resume figure (default 20000 quick, 50000 full; 0: none)")
    parser.add_argument("--n", type=int, default=0, help="scale run: one job of N items with searches meanwhile (0: none)")
    parser.add_argument("--search-qps", type=float, default=4.0, help="scale run: searches per second during the job (default 4)")
    parser.add_argument("--scale-keep-media", action=argparse.BooleanOptionalAction, default=True,
                        help="scale run: keep previews/originals (the default of a collection; --no-scale-keep-media: the model + index path alone)")
    parser.add_argument("--scale-build", action=argparse.BooleanOptionalAction, default=True,
                        help="scale run: wait for the index build of the whole collection and measure its memory (--no-scale-build: skip; at 1M it takes ~15 min here)")
    parser.add_argument("--progress", action="store_true", help="scale run: show the SDK's progress bar")
    args = parser.parse_args()
    args.items = args.items or (2000 if args.quick else 10000)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.resume_items = (20000 if args.quick else 50000) if args.resume_items is None else args.resume_items

    path = bundle(args.model, int8=False)
    env = {
        "OMNIVEC_SERVER__LOG_LEVEL": "warning",
        "OMNIVEC_SERVER__INFERENCE_THREADS": "1",
        "OMNIVEC_INDEX__SEARCH_THREADS": "1",
        "OMNIVEC_BATCHING__MAX_BATCH": str(args.batch),
    }
    figures: dict = {"model": args.model, "engine": "edge", "batch": args.batch, "default_concurrency": DEFAULT_CONCURRENCY}
    with tempfile.TemporaryDirectory(prefix="omnivec-bulk-") as tmp:
        env["OMNIVEC_DATA_DIR"] = tmp
        with ServerProcess(path, env=env, log=Path(tmp) / "server.log") as server:
            print(f"throughput: {args.items} texts x {args.rounds} rounds ...", file=sys.stderr, flush=True)
            figures.update(throughput(server.url, args, DEFAULT_CONCURRENCY))
            if args.resume_items:
                print(f"resume: {args.resume_items} stored texts ...", file=sys.stderr, flush=True)
                figures.update(resume(server.url, args))
            if args.n:
                print(f"scale: one job of {args.n} texts, {args.search_qps:g} searches/s meanwhile ...", file=sys.stderr, flush=True)
                figures.update(scale(server.url, server.pid, args))
    final_json(figures)


if __name__ == "__main__":
    main()
