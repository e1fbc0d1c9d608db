"""Helpers shared by the benchmark scripts: cached bundles, timing, the final JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "data" / "bench"


def bundle(model: str = "ViT-B-32", int8: bool = True) -> Path:
    """Export `model` (random init) once into data/bench/ and reuse it on later runs."""
    out = CACHE / model.lower()
    if not (out / "manifest.json").is_file() or (int8 and not any(out.glob("*.int8.onnx"))):
        print(f"exporting {model} to {out} (first run only)...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "omnivec", "export", "--model", model, "--pretrained", "none", "--out", str(out)]
        subprocess.run(cmd + (["--int8"] if int8 else []), check=True, stdout=subprocess.DEVNULL)
    return out


def items_per_second(fn: Callable[[], object], items: int, min_seconds: float, min_reps: int = 1) -> float:
    """Throughput of `fn` (one warm-up call, then repeat until min_seconds and min_reps)."""
    fn()
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        reps += 1
    return reps * items / (time.perf_counter() - start)


def matmul_peak_flops(threads: int, seconds: float = 2.0, n: int = 2048) -> float:
    """Sustained fp32 matmul FLOP/s of this machine with numpy/BLAS at `threads` threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    with threadpool_limits(threads):
        return items_per_second(lambda: a @ b, 2 * n**3, seconds, min_reps=3)


def blas_info() -> str:
    from threadpoolctl import threadpool_info

    return ", ".join(f"{i['internal_api']}:{i.get('architecture', '?')}" for i in threadpool_info()) or "unknown"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """A process's memory lines from /proc/PID/status in bytes (VmRSS, RssAnon, RssFile, VmHWM, ...);
    raises OSError once the process is gone."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                found[key] = int(value.split()[0]) * 1024
    return found


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, by thread id (the main thread's id is the pid)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_by_role(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU seconds between two `thread_cpu` readings of a server: `loop` (the main thread, uvicorn's event
    loop), `model` (the busiest other thread: the one inference thread under a text load; CPython does
    not give threads OS names) and `other` (preprocessing, store, ...)."""
    delta = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    loop = delta.pop(pid, 0.0)
    model = max(delta.values(), default=0.0)
    return {"loop": loop, "model": model, "other": sum(delta.values()) - model}


def sample_peaks(pid: int, stop, peaks: dict[str, int], every_s: float = 0.05) -> None:
    """Keep the highest RssAnon / RssFile / VmRSS (bytes) of process `pid` until it exits or `stop`
    (a threading.Event) is set; run it in a thread beside the work."""
    while not stop.is_set():
        try:
            now = proc_memory(pid)
        except OSError:
            return
        for key in ("RssAnon", "RssFile", "VmRSS"):
            if key in now:
                peaks[key] = max(peaks.get(key, 0), now[key])
        time.sleep(every_s)


def dir_bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the files under `path`, leaving out any whose relative path has a part in `skip`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not set(f.relative_to(path).parts) & set(skip))


async def post_all(url: str, path: str, bodies: list[dict], connections: int) -> float:
    """POST every body to `url + path`, `connections` at a time; items/s over the whole phase
    (items: the length of each body's "items" or "inputs"). Any non-200 or item error aborts."""
    import asyncio

    import httpx

    queue = list(reversed(bodies))
    items = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal items
        while queue:
            body = queue.pop()
            r = await client.post(f"{url}{path}", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {r.status_code}: {r.text[:300]}")
            data = r.json()
            if data.get("errors"):
                raise RuntimeError(f"{path}: item errors: {data['errors'][:2]}")
            items += len(body.get("items") or body.get("inputs"))

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=connections)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        return items / (time.perf_counter() - start)


def final_json(figures: dict) -> None:
    """The last line of every benchmark: one JSON object of its figures."""
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}), flush=True)


def set_threads_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
