"""What the Python SDK costs and saves, against hand-written httpx calls, over real HTTP.

`omnivec serve` runs in a child process (omnivec-tiny, 1 model thread, Edge index in a temp data
dir). Each figure is a ratio measured within the run, in alternating order over several rounds
(median of per-round ratios, so load from other processes cancels out):

  sdk_over_raw_embed   Client.embed(...) items/s over posting the same batches to /v1/embed with
                       httpx (same inputs, same base64 encoding): the client's own overhead (1.0 = free).
  sdk_over_raw_add     Client.add(..., skip_existing=False) over posting the same batches to
                       /v1/collections/{name}/items, each into a fresh collection.
  resume_speedup       re-running Client.add over items already stored (ids computed locally, one
                       exists call per batch, nothing re-sent) vs re-sending them (skip_existing=False).
  async_concurrency_gain   16 AsyncClient.embed calls of one text each, all at once (asyncio.gather),
                       over the same 16 calls one after another: what server-side batching gives
                       concurrent SDK callers.

    .venv/bin/python bench/bench_client.py --quick     # about a minute

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bundle, final_json  # noqa: E402

WORDS = "red green blue dog cat car tree house river mountain photo of a the small large old new street beach".split()


def make_media(count: int, side: int, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """Distinct JPEG images and captions."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(out, "JPEG", quality=90)
        images.append(out.getvalue())
    texts = [" ".join(rng.choice(WORDS, 10)) for _ in range(count)]
    return images, texts


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_embed(http, inputs: list[dict], batch: int) -> None:
    for i in range(0, len(inputs), batch):
        r = http.post("/v1/embed", json={"inputs": inputs[i : i + batch], "encoding": "base64"})
        r.raise_for_status()
        [np.frombuffer(base64.b64decode(row["embedding"]), "<f4") for row in r.json()["data"]]


def raw_add(http, name: str, inputs: list[dict], batch: int) -> None:
    for i in range(0, len(inputs), batch):
        r = http.post(f"/v1/collections/{name}/items", json={"items": inputs[i : i + batch]})
        r.raise_for_status()
        if r.json()["errors"]:
            raise RuntimeError(r.json()["errors"][:2])


def measure(url: str, images: list[bytes], texts: list[str], batch: int, rounds: int) -> dict:
    import httpx

    from omnivec_client import Client, Item

    inputs = [{"text": t} for t in texts] + [{"image": base64.b64encode(b).decode("ascii")} for b in images]  # the SDK's order
    items = [Item(text=t) for t in texts] + [Item(image=b) for b in images]
    n = len(items)
    ratios: dict[str, list[float]] = {"embed": [], "add": [], "resume": [], "async": []}
    with httpx.Client(base_url=url, timeout=300) as http, Client(url, batch_size=batch, timeout_s=300) as omni:
        raw_embed(http, inputs[:batch], batch)  # warm-up
        omni.embed(texts[:batch])
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            pair = [("raw", lambda: raw_embed(http, inputs, batch)), ("sdk", lambda: omni.embed(texts, images))]
            t = {k: timed(fn) for k, fn in (pair if r % 2 == 0 else pair[::-1])}
            ratios["embed"].append(t["raw"] / t["sdk"])

            names = {k: f"bench-client-{k}-{r}" for k in ("raw", "sdk")}
            for name in names.values():
                omni.create_collection(name)
            pair = [("raw", lambda: raw_add(http, names["raw"], inputs, batch)), ("sdk", lambda: omni.add(names["sdk"], items, skip_existing=False))]
            t = {k: timed(fn) for k, fn in (pair if r % 2 == 0 else pair[::-1])}
            ratios["add"].append(t["raw"] / t["sdk"])
            if omni.get_collection(names["sdk"]).count != n or omni.get_collection(names["raw"]).count != n:
                raise RuntimeError("not every item was stored")

            resent = timed(lambda: omni.add(names["sdk"], items, skip_existing=False))
            resumed_result = []
            resumed = timed(lambda: resumed_result.append(omni.add(names["sdk"], items, skip_existing=True)))
            if resumed_result[0].skipped != n:
                raise RuntimeError(f"resume skipped {resumed_result[0].skipped} of {n}")
            ratios["resume"].append(resent / resumed)
            for name in names.values():
                omni.delete_collection(name)

            ratios["async"].append(asyncio.run(async_gain(url, texts[:16])))
    return {k: statistics.median(v) for k, v in ratios.items()} | {f"{k}_min": min(v) for k, v in ratios.items()} | {f"{k}_max": max(v) for k, v in ratios.items()}


async def async_gain(url: str, texts: list[str]) -> float:
    from omnivec_client import AsyncClient

    async with AsyncClient(url) as omni:
        await omni.embed(texts[:1])
        start = time.perf_counter()
        for text in texts:
            await omni.embed([text])
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(omni.embed([text]) for text in texts))
        together = time.perf_counter() - start
    return one_by_one / together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds (about a minute on 2 cores)")
    parser.add_argument("--items", type=int, help="images and as many texts per phase (default 1024 quick, 4096 full)")
    parser.add_argument("--rounds", type=int, help="rounds, median taken (default 5 quick, 9 full)")
    parser.add_argument("--batch", type=int, default=32, help="inputs per request and server max batch (default 32)")
    args = parser.parse_args()
    items = args.items or (1024 if args.quick else 4096)
    rounds = args.rounds or (5 if args.quick else 9)

    from omnivec.server_process import ServerProcess

    path = bundle("omnivec-tiny", int8=False)
    images, texts = make_media(items, 96)
    env = {
        "OMNIVEC_SERVER__LOG_LEVEL": "warning",
        "OMNIVEC_SERVER__INFERENCE_THREADS": "1",
        "OMNIVEC_MODEL__INTRA_OP_THREADS": "1",
        "OMNIVEC_INDEX__SEARCH_THREADS": "1",
        "OMNIVEC_BATCHING__MAX_BATCH": str(args.batch),
    }
    with tempfile.TemporaryDirectory(prefix="omnivec-bench-") as tmp:
        env["OMNIVEC_DATA_DIR"] = tmp
        with ServerProcess(path, env=env, log=Path(tmp) / "server.log") as server:
            r = measure(server.url, images, texts, args.batch, rounds)

    print("\n| figure | median | min-max of rounds |")
    print("|---|---:|---:|")
    for key, name in (("embed", "sdk_over_raw_embed"), ("add", "sdk_over_raw_add"), ("resume", "resume_speedup"), ("async", "async_concurrency_gain")):
        print(f"| {name} | {r[key]:.3f} | {r[key + '_min']:.2f}-{r[key + '_max']:.2f} |")
    print()
    final_json(
        {
            "sdk_over_raw_embed": r["embed"],
            "sdk_over_raw_add": r["add"],
            "resume_speedup": r["resume"],
            "async_concurrency_gain": r["async"],
            "model": "omnivec-tiny",
            "items": 2 * items,
            "rounds": rounds,
            "batch": args.batch,
            "threads": 1,
        }
    )


if __name__ == "__main__":
    main()
