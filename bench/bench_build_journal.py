#!/usr/bin/env python
"""Memory of writes made while an embedded-engine index build runs (issue 18: builds must not need
twice the collection's memory).

An Edge build optimizes a copy of the shard in a child process while writes go on to the live
shard; the writes made meanwhile are journaled and brought onto the copy before the swap. This
bench writes the same `--writes` points into a collection twice: once with no build running (the
baseline), once while a build is held open (the child waits until the writes are done, so the
whole batch lands in the journal). It reports the process's anonymous memory growth (RssAnon,
the memory a journal holds; the shards themselves are memory-mapped files) for each, and how long
the catch-up and the exclusive swap take. It also samples the build child's peak memory (anonymous
and file-backed) against the built collection's size on disk (its vectors, graph and payloads; the
live process maps the same files): what a build costs on top of the collection it builds.

    .venv/bin/python bench/bench_build_journal.py --quick   # 20k points + 20k written during the build, ~1 min
    .venv/bin/python bench/bench_build_journal.py           # 100k + 100k

Ends with one JSON line: `rss_growth_during_build_over_idle` (1.0: writes during a build cost
no more memory than the same writes without one), the two growths in MiB, `catch_up_s`, `swap_ms`,
`collection_rss_mib`, `collection_disk_mib_after_build`, `build_child_peak_{rss,anon,file}_mib` and
`build_child_anon_over_collection_disk` (the build's own anonymous memory / the built collection's size).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import dir_bytes, final_json, proc_memory, sample_peaks  # noqa: E402

from omnivec.server.index import EdgeIndexStore, Point  # noqa: E402
from omnivec.server.index import edge_optimizer  # noqa: E402


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """A process's RssAnon, RssFile and VmRSS in MiB."""
    found = proc_memory(pid)
    return {k: found[k] / 2**20 for k in ("RssAnon", "RssFile", "VmRSS")}


def rss_anon_mib() -> float:
    """This process's anonymous resident memory (MiB)."""
    return memory_mib()["RssAnon"]


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(store: EdgeIndexStore, name: str, data: np.ndarray, start: int, batch: int = 2000) -> None:
    for i in range(0, len(data), batch):
        store.upsert(name, [Point(f"p{start + i + j}", v, {"i": start + i + j, "tag": f"t{(i + j) % 50}"}) for j, v in enumerate(data[i : i + batch])])


def growth_of(store: EdgeIndexStore, name: str, data: np.ndarray, start: int) -> float:
    gc.collect()
    before = rss_anon_mib()
    write(store, name, data, start)
    gc.collect()
    return rss_anon_mib() - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k points, 20k written during the build")
    ap.add_argument("--points", type=int, default=100_000, help="points in the collection before the build")
    ap.add_argument("--writes", type=int, default=100_000, help="points written while the build runs")
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    if args.quick:
        args.points, args.writes = 20_000, 20_000
    base, extra = vectors(args.points, args.dim, 1), vectors(args.writes, args.dim, 2)
    flag = Path(tempfile.mkdtemp()) / "writes-done"
    # Hold the build open until the writes are done, so every write lands in the journal.
    edge_optimizer._OPTIMIZE_CHILD = f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)\n" + edge_optimizer._OPTIMIZE_CHILD
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeIndexStore(Path(tmp) / "idx", search_threads=1, indexing_threads=1)
        try:
            empty = memory_mib()
            for name in ("idle", "built"):
                store.create_collection(name, args.dim, space_id="bench", model="bench")
                write(store, name, base, 0)
            loaded = memory_mib()
            idle = growth_of(store, "idle", extra, args.points)
            errors: list[BaseException] = []

            def build() -> None:
                try:
                    store.optimize("built")
                except BaseException as exc:  # reported below
                    errors.append(exc)

            thread = threading.Thread(target=build)
            thread.start()
            while store._collections["built"].proc is None:  # set after the journal, in the same step
                time.sleep(0.01)
            child_peaks: dict[str, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=sample_peaks, args=(store._collections["built"].proc.pid, stop, child_peaks), daemon=True)
            during = growth_of(store, "built", extra, args.points)
            sampler.start()  # the child's own memory: from when it starts building
            flag.touch()
            thread.join()
            stop.set()
            sampler.join()
            if errors:
                raise errors[0]
            timings = store.last_optimize_timings
            assert store.count("built") == args.points + args.writes
            built = store._collections["built"].shard_dir
            # without the write-ahead log: preallocated (~0.13 GiB) whatever the collection's size
            disk_mib = dir_bytes(built, skip=("wal",)) / 2**20
        finally:
            store.close()
    # one collection's share of this process's memory before the writes (two twins were filled)
    per_collection = {k: (loaded[k] - empty[k]) / 2 for k in ("RssAnon", "RssFile", "VmRSS")}
    print(f"anonymous memory growth for {args.writes} writes: {idle:.1f} MiB idle, {during:.1f} MiB during a build")
    print(f"one collection of {args.points}: {per_collection['VmRSS']:.0f} MiB resident ({per_collection['RssAnon']:.0f} anonymous); "
          f"built collection of {args.points + args.writes}: {disk_mib:.0f} MiB on disk; "
          f"build child peak {child_peaks.get('VmRSS', 0) / 2**20:.0f} MiB ({child_peaks.get('RssAnon', 0) / 2**20:.0f} anonymous, {child_peaks.get('RssFile', 0) / 2**20:.0f} file-backed)")
    final_json({
        "rss_growth_during_build_over_idle": during / max(idle, 1.0),
        "rss_growth_idle_mib": idle,
        "rss_growth_during_build_mib": during,
        "vectors_written_mib": args.writes * args.dim * 4 / 2**20,
        "catch_up_s": timings.get("caught_up", float("nan")) - timings.get("locked", float("nan")),
        "swap_ms": 1000 * (timings.get("swapped", float("nan")) - timings.get("caught_up", timings.get("locked", float("nan")))),
        "collection_rss_mib": per_collection["VmRSS"],
        "collection_anon_mib": per_collection["RssAnon"],
        "build_child_peak_rss_mib": child_peaks.get("VmRSS", float("nan")) / 2**20,
        "build_child_peak_anon_mib": child_peaks.get("RssAnon", float("nan")) / 2**20,
        "build_child_peak_file_mib": child_peaks.get("RssFile", float("nan")) / 2**20,
        "collection_disk_mib_after_build": disk_mib,
        "build_child_anon_over_collection_disk": child_peaks.get("RssAnon", float("nan")) / 2**20 / max(disk_mib, 1.0),
        "points": args.points,
        "writes": args.writes,
        "dim": args.dim,
    })


if __name__ == "__main__":
    main()
