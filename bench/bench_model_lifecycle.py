"""Model lifecycle over real HTTP: re-embedding throughput, search latency during the swap, model load time.

`omnivec serve --bundle A --bundle b=B` runs in a child process (1 model thread, Edge index in a temp
data dir); A and B are omnivec-tiny with two seeds (two embedding spaces), exported once into data/bench/.
The same items (JPEG images and short captions, half and half) are

  index     POST /v1/collections/{name}/items into a collection in B's space (4 connections, 32 items each)
  reembed   indexed with A into another collection, then POST .../reembed {"model": "b"} until done

`reembed_items_per_s_over_index` is re-embedding items/s over first-indexing items/s, same model (B) and
same data, measured in the same run (median over rounds, paired per round). Re-embedding reads each
item's kept original from the media store, so it pays for that read instead of the request upload.
`search_p99_during_swap_over_idle` is the p99 latency of text searches on the collection (2 clients)
while it is being re-embedded and swapped, over the p99 of the same searches with the server idle;
any failed search aborts the run. `model_load_s` is POST /v1/models until ready (towers opened and
probed on this host), as the server reports it, per bundle: omnivec-tiny always, and omnivec-mini and
ViT-B-32 (random init, exported once) unless --quick is combined with --no-big-models.

    .venv/bin/python bench/bench_model_lifecycle.py --quick     # about a minute after the first export
    .venv/bin/python bench/bench_model_lifecycle.py             # more items, 3 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, bundle, final_json, percentile  # noqa: E402
from bench_indexing import make_items  # noqa: E402


def tiny(seed: int) -> Path:
    """omnivec-tiny with this seed, exported once."""
    out = CACHE / f"omnivec-tiny-seed{seed}"
    if not (out / "manifest.json").is_file():
        print(f"exporting omnivec-tiny (seed {seed}) to {out} (first run only)...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "omnivec", "export", "--model", "omnivec-tiny", "--pretrained", "none", "--seed", str(seed), "--out", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


async def index(http: httpx.AsyncClient, name: str, items: list[dict], model: str | None, connections: int = 4, batch: int = 32) -> float:
    """Create `name` (in `model`'s space) and add every item; items/s."""
    r = await http.post("/v1/collections", json={"name": name, **({"model": model} if model else {})})
    r.raise_for_status()
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    queue = list(enumerate(batches))

    async def worker() -> None:
        while queue:
            k, part = queue.pop()
            body = {"items": [{"id": f"i{k}-{j}", **item} for j, item in enumerate(part)]}
            r = await http.post(f"/v1/collections/{name}/items", json=body)
            if r.status_code != 200 or r.json()["errors"]:
                raise RuntimeError(f"indexing failed: {r.status_code} {r.text[:300]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(items) / (time.perf_counter() - start)


async def searches(http: httpx.AsyncClient, name: str, queries: list[str], until, clients: int = 2) -> list[float]:
    """Search latencies (s) from `clients` loops until `until()` is true; any failure raises."""
    latencies: list[float] = []

    async def loop(k: int) -> None:
        i = k
        while not until():
            start = time.perf_counter()
            r = await http.post(f"/v1/collections/{name}/search", json={"query": {"text": queries[i % len(queries)]}, "top_k": 10})
            if r.status_code != 200:
                raise RuntimeError(f"a search failed during the run: {r.status_code} {r.text[:300]}")
            latencies.append(time.perf_counter() - start)
            i += clients

    await asyncio.gather(*(loop(k) for k in range(clients)))
    return latencies


async def reembed(http: httpx.AsyncClient, name: str, model: str, queries: list[str]) -> tuple[float, list[float], int]:
    """Re-embed `name` into `model` with searches running; (items/s, search latencies, total)."""
    start = time.perf_counter()
    r = await http.post(f"/v1/collections/{name}/reembed", json={"model": model})
    r.raise_for_status()
    status: dict = r.json()

    async def poll() -> None:
        nonlocal status
        while status["state"] == "running":
            await asyncio.sleep(0.02)
            status = (await http.get(f"/v1/collections/{name}/reembed")).json()

    poller = asyncio.create_task(poll())
    latencies = await searches(http, name, queries, lambda: poller.done())
    await poller
    elapsed = time.perf_counter() - start
    if status["state"] != "done" or status["errors"]:
        raise RuntimeError(f"re-embed ended {status['state']}: {status.get('message')} {status['errors'][:3]}")
    return status["total"] / elapsed, latencies, status["total"]


async def load_time(http: httpx.AsyncClient, path: Path, name: str) -> float:
    r = await http.post("/v1/models", json={"bundle": str(path), "name": name})
    r.raise_for_status()
    while (info := (await http.get(f"/v1/models/{name}")).json())["state"] == "loading":
        await asyncio.sleep(0.05)
    if info["state"] != "ready":
        raise RuntimeError(f"loading {path} failed: {info['error']}")
    (await http.delete(f"/v1/models/{name}")).raise_for_status()
    return float(info["load_s"])


async def run(url: str, args: argparse.Namespace, big: dict[str, Path]) -> dict:
    items = make_items(args.items, 224, seed=1)["mixed"]
    queries = [item["text"] for item in items if "text" in item]
    ratios, p99_ratios, figures = [], [], {}
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        for k in range(args.rounds):
            index_rate = await index(http, f"indexed{k}", items, "b")
            await index(http, f"source{k}", items, None)
            idle_until = time.perf_counter() + args.idle_s
            idle = await searches(http, f"source{k}", queries, lambda: time.perf_counter() > idle_until)
            reembed_rate, during, total = await reembed(http, f"source{k}", "b", queries)
            count = (await http.get(f"/v1/collections/source{k}")).json()["count"]
            assert count == total == len(items), (count, total)
            ratios.append(reembed_rate / index_rate)
            p99_ratios.append(percentile(during, 99) / percentile(idle, 99))
            print(
                f"round {k}: index {index_rate:.1f} items/s, re-embed {reembed_rate:.1f} items/s; search p99 idle "
                f"{percentile(idle, 99) * 1000:.1f} ms ({len(idle)}), during the swap {percentile(during, 99) * 1000:.1f} ms ({len(during)})",
                file=sys.stderr,
                flush=True,
            )
            figures.update(index_items_per_s=index_rate, reembed_items_per_s=reembed_rate, search_p99_idle_ms=percentile(idle, 99) * 1000,
                           search_p99_during_swap_ms=percentile(during, 99) * 1000, searches_during_swap=len(during))  # fmt: skip
        loads = {"omnivec-tiny": await load_time(http, tiny(2), "tiny-load")}
        for label, path in big.items():
            loads[label] = await load_time(http, path, label.lower())
            print(f"{label}: loaded in {loads[label]:.2f} s", file=sys.stderr, flush=True)
    return {
        "reembed_items_per_s_over_index": statistics.median(ratios),
        "search_p99_during_swap_over_idle": statistics.median(p99_ratios),
        "model_load_s": loads,
        "items": len(items),
        "rounds": args.rounds,
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items, one round (about a minute)")
    parser.add_argument("--items", type=int, help="items per collection (default 256 quick, 768 full)")
    parser.add_argument("--rounds", type=int, help="rounds (default 1 quick, 3 full)")
    parser.add_argument("--idle-s", type=float, default=3.0, help="seconds of idle searches per round")
    parser.add_argument("--no-big-models", action="store_true", help="skip the load times of omnivec-mini and ViT-B-32")
    args = parser.parse_args()
    args.items = args.items or (256 if args.quick else 768)
    args.rounds = args.rounds or (1 if args.quick else 3)
    from omnivec.server_process import ServerProcess

    a, b = tiny(0), tiny(1)
    big = {} if args.no_big_models else {"omnivec-mini": bundle("omnivec-mini", int8=False), "ViT-B-32": bundle("ViT-B-32", int8=False)}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OMNIVEC_DATA_DIR": tmp, "OMNIVEC_INDEX__OPTIMIZE_AFTER_POINTS": "0", "OMNIVEC_LOG_LEVEL": "warning"}
        with ServerProcess(a, env=env, args=["--bundle", f"b={b}"], log=Path(tmp) / "server.log") as server:
            figures = asyncio.run(run(server.url, args, big))
    final_json(figures)


if __name__ == "__main__":
    main()
