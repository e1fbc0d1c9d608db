"""End-to-end indexing throughput as a fraction of embedding-only throughput, over real HTTP.

`omnivec serve` runs in a child process (1 model thread, Edge index in a temp data dir). The same
items (JPEG images and short captions) are sent in the same batches, with the same number of
concurrent connections, to

  embed   POST /v1/embed                      (decode + preprocess + model)
  index   POST /v1/collections/{name}/items   (the same, plus content ids, payloads and the Edge upsert)

in alternating order over several rounds (each index round into a fresh collection).
`index_over_embed` is the median over rounds of index items/s / embed items/s (paired per round, so
load from other processes cancels out), i.e. what fraction of the model-bound throughput survives the
indexing path (1.0 = indexing is free; /v1/embed also returns every vector as JSON, which indexing
does not, so values slightly above 1 are possible on cheap models).
Measured per modality mix: `mixed` (half images, half texts; the headline), `image`, `text`.

    .venv/bin/python bench/bench_indexing.py --quick          # about a minute, omnivec-tiny
    .venv/bin/python bench/bench_indexing.py --vit            # also ViT-B-32 (random init, exported once)

The last line is one JSON object: `index_over_embed` plus the details.
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
from _common import bundle, final_json, post_all  # noqa: E402

WORDS = "red green blue dog cat car tree house river mountain photo of a the small large old new street beach".split()


def make_items(count: int, image_size: int, seed: int = 0) -> dict[str, list[dict]]:
    """Distinct JPEG images and captions, as API inputs, per modality mix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (image_size, image_size + 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=90)
        images.append({"image": base64.b64encode(buf.getvalue()).decode("ascii")})
    texts = [{"text": " ".join(rng.choice(WORDS, 10))} for _ in range(count)]
    mixed = [item for pair in zip(images[: count // 2], texts[: count // 2]) for item in pair]
    return {"mixed": mixed, "image": images, "text": texts}


def measure(url: str, items: list[dict], batch: int, connections: int, rounds: int, tag: str) -> dict:
    import httpx

    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    embed_bodies = [{"inputs": chunk} for chunk in chunks]
    warm = asyncio.run(post_all(url, "/v1/embed", embed_bodies[:2], connections))  # warm-up: sessions, allocator
    del warm
    embed, index = [], []
    for r in range(rounds):
        name = f"bench-{tag}-{r}"
        httpx.post(f"{url}/v1/collections", json={"name": name}, timeout=30).raise_for_status()
        index_bodies = [{"items": chunk} for chunk in chunks]
        phases = [("embed", "/v1/embed", embed_bodies), ("index", f"/v1/collections/{name}/items", index_bodies)]
        for kind, path, bodies in phases if r % 2 == 0 else phases[::-1]:
            (embed if kind == "embed" else index).append(asyncio.run(post_all(url, path, bodies, connections)))
        count = httpx.get(f"{url}/v1/collections/{name}", timeout=30).json()["count"]
        if count != len(items):
            raise RuntimeError(f"{name}: {count} items stored, expected {len(items)}")
        httpx.delete(f"{url}/v1/collections/{name}", timeout=60).raise_for_status()
    ratios = [i / e for e, i in zip(embed, index)]  # paired by round: adjacent in time, so load drift cancels
    return {
        "embed_items_s": statistics.median(embed),
        "index_items_s": statistics.median(index),
        "index_over_embed": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def run_model(model: str, args: argparse.Namespace, items: int, rounds: int) -> dict:
    from omnivec.server.bundle import ModelBundle
    from omnivec.server_process import ServerProcess

    path = bundle(model, int8=False)
    manifest = ModelBundle.load(path).manifest
    image_size = max(manifest.towers["image"].preprocess.size) * 2  # type: ignore[union-attr]  # real decode + resize work
    data = make_items(items, image_size)
    env = {
        "OMNIVEC_SERVER__LOG_LEVEL": "warning",
        "OMNIVEC_SERVER__INFERENCE_THREADS": "1",
        "OMNIVEC_INDEX__SEARCH_THREADS": "1",
        "OMNIVEC_BATCHING__MAX_BATCH": str(args.batch),
    }
    out: dict = {"model": model, "image_px": image_size, "items": items, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="omnivec-bench-") as tmp:
        env["OMNIVEC_DATA_DIR"] = tmp
        with ServerProcess(path, env=env, log=Path(tmp) / "server.log") as server:
            for mix in args.mixes:
                print(f"[{model}] {mix}: {len(data[mix])} items x {rounds} rounds ...", file=sys.stderr, flush=True)
                out[mix] = measure(server.url, data[mix], args.batch, args.connections, rounds, mix)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds (about a minute on 2 cores)")
    parser.add_argument("--vit", action="store_true", help="also measure ViT-B-32 (exported on first use, slower)")
    parser.add_argument("--items", type=int, help="items per phase (default 2048 quick, 4096 full)")
    parser.add_argument("--rounds", type=int, help="alternating embed/index rounds, median taken (default 5 quick, 9 full)")
    parser.add_argument("--vit-items", type=int, help="items per phase for ViT-B-32 (default 64 quick, 256 full; 1 thread is slow)")
    parser.add_argument("--batch", type=int, default=32, help="items per request and server max batch (default 32)")
    parser.add_argument("--connections", type=int, default=2, help="concurrent requests (default 2)")
    parser.add_argument("--mixes", default="mixed,image,text", help="modality mixes to run (default mixed,image,text)")
    args = parser.parse_args()
    args.items = args.items or (2048 if args.quick else 4096)
    args.rounds = args.rounds or (5 if args.quick else 9)
    args.mixes = [m for m in args.mixes.split(",") if m]

    results = [run_model("omnivec-tiny", args, args.items, args.rounds)]
    if args.vit:
        results.append(run_model("ViT-B-32", args, args.vit_items or (64 if args.quick else 256), 3 if args.quick else 5))

    print("\n| model | mix | items | embed items/s | index items/s | index/embed (median, min-max of rounds) |")
    print("|---|---|---:|---:|---:|---:|")
    for res in results:
        for mix in args.mixes:
            r = res[mix]
            print(f"| {res['model']} | {mix} | {res['items']} | {r['embed_items_s']:.1f} | {r['index_items_s']:.1f} | {r['index_over_embed']:.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) |")
    print()

    head = results[0]
    figures: dict = {
        "index_over_embed": head["mixed"]["index_over_embed"] if "mixed" in head else head[args.mixes[0]]["index_over_embed"],
        "model": head["model"],
        "engine": "edge",
        "items": head["items"],
        "rounds": head["rounds"],
        "batch": args.batch,
        "connections": args.connections,
        "threads": 1,
    }
    for res in results:
        suffix = "" if res is head else "_" + res["model"].lower().replace("-", "_")
        for mix in args.mixes:
            r = res[mix]
            key = f"{mix}{suffix}"
            figures[f"index_over_embed_{key}"] = r["index_over_embed"]
            figures[f"index_over_embed_min_{key}"] = r["ratio_min"]
            figures[f"index_over_embed_max_{key}"] = r["ratio_max"]
            figures[f"embed_items_s_{key}"] = r["embed_items_s"]
            figures[f"index_items_s_{key}"] = r["index_items_s"]
    final_json(figures)


if __name__ == "__main__":
    main()
