"""Served vs raw, and batching on vs off, through real HTTP on 127.0.0.1.

For each tower (text, image) of one bundle (default ViT-B-32, random init):
  raw        onnxruntime items/s at batch 1 and at the max batch, same threads as the server,
             measured before and after the served phases (mean of the two);
             raw_batch_gain = items/s at max batch / items/s at batch 1 (what batching can gain at best)
  served     `omnivec serve` in a child process, 1 model thread, load from an async httpx
             generator with 1 and 32 connections, one item per request, fixed duration and a
             request cap; batching on, then batching off (one model call per request).
Figures: served_over_raw (batching on, 32 connections / raw at max batch),
batching_speedup_32 (on/off requests/s at 32 connections), latency_ratio_1conn (on/off p50 at 1
connection), raw_batch_gain — headline keys are the text tower's, `_image` keys the image tower's.

    .venv/bin/python bench/bench_serving.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bundle, final_json, items_per_second, percentile  # noqa: E402


def _payloads(modality: str, count: int, image_size: int) -> list[dict]:
    from PIL import Image

    rng = np.random.default_rng(0)
    if modality == "text":
        words = "red green blue dog cat car tree house river mountain photo of a the small large".split()
        return [{"texts": [" ".join(rng.choice(words, 8))]} for _ in range(count)]
    out = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (image_size, image_size + 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        out.append({"images": [base64.b64encode(buf.getvalue()).decode()]})
    return out


async def _load(url: str, payloads: list[dict], connections: int, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    sent = 0

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        nonlocal errors, sent
        i = k
        while time.monotonic() < stop and sent < max_requests:
            sent += 1
            t0 = time.perf_counter()
            r = await client.post(f"{url}/v1/embed", json=payloads[i % len(payloads)])
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            i += connections

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=connections)) as client:
        await client.post(f"{url}/v1/embed", json=payloads[0])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, k) for k in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute once the bundle is cached)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture or omnivec config (default ViT-B-32)")
    parser.add_argument("--towers", default="text,image", help="towers to measure (default text,image)")
    parser.add_argument("--max-batch", type=int, default=32, help="server max batch and raw batch size (default 32)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections at saturation (default 32)")
    parser.add_argument("--seconds", type=float, help="seconds per load phase (default 4 quick, 15 full)")
    args = parser.parse_args()

    from omnivec.server.bundle import ModelBundle
    from omnivec.server.inference.onnx import OnnxEncoder
    from omnivec.server_process import ServerProcess

    seconds = args.seconds or (4.0 if args.quick else 15.0)
    path = bundle(args.model, int8=False)
    manifest = ModelBundle.load(path).manifest
    towers = [t for t in args.towers.split(",") if t in manifest.towers]
    results: dict = {"model": args.model, "threads": 1, "max_batch": args.max_batch, "seconds_per_phase": seconds}

    # raw model throughput, same thread count as the server's model calls; measured before and
    # after the served phases and averaged, so slow drift of the machine affects both sides alike
    def measure_raw() -> None:
        for tower in towers:
            _raw_phase(tower)

    def _raw_phase(tower: str) -> None:
        encoder = OnnxEncoder(path / f"{tower}.onnx", tower, intra_op_threads=1)
        name = encoder.input_names[0]
        rng = np.random.default_rng(0)

        def make(batch: int) -> np.ndarray:
            if tower == "image":
                h, w = manifest.towers["image"].preprocess.size  # type: ignore[union-attr]
                return rng.standard_normal((batch, 3, h, w)).astype(np.float32)
            ids = np.zeros((batch, manifest.towers["text"].preprocess.context_length), np.int64)  # type: ignore[union-attr]
            ids[:, 0], ids[:, 1:11], ids[:, 11] = 49406, rng.integers(300, 40000, (batch, 10)), 49407
            return ids

        x1, xb = make(1), make(args.max_batch)
        raw1 = items_per_second(lambda: encoder.encode({name: x1}), 1, seconds / 2, 3)
        rawb = items_per_second(lambda: encoder.encode({name: xb}), args.max_batch, seconds / 2, 2)
        encoder.close()
        runs = results.setdefault(tower, {}).setdefault("raw_runs", [])
        runs.append({"b1": raw1, f"b{args.max_batch}": rawb})
        results[tower]["raw_b1_items_s"] = sum(r["b1"] for r in runs) / len(runs)
        results[tower][f"raw_b{args.max_batch}_items_s"] = sum(r[f"b{args.max_batch}"] for r in runs) / len(runs)
        results[tower]["raw_batch_gain"] = results[tower][f"raw_b{args.max_batch}_items_s"] / results[tower]["raw_b1_items_s"]

    measure_raw()

    env_common = {"OMNIVEC_SERVER__INFERENCE_THREADS": "1", "OMNIVEC_BATCHING__MAX_BATCH": str(args.max_batch), "OMNIVEC_SERVER__LOG_LEVEL": "warning"}
    max_requests = 10_000
    for batching in ("on", "off"):
        env = {**env_common, "OMNIVEC_BATCHING__ENABLED": "true" if batching == "on" else "false"}
        with ServerProcess(path, env=env) as server:
            for tower in towers:
                payloads = _payloads(tower, 64, 256)
                for conns in (1, args.connections):
                    stats = asyncio.run(_load(server.url, payloads, conns, seconds, max_requests))
                    results[tower][f"batching_{batching}_{conns}conn"] = stats

    measure_raw()
    print(f"\n{args.model}, model threads 1, max batch {args.max_batch}, {seconds:.0f} s per phase\n")
    print(f"{'tower':6} {'mode':12} {'conns':>5} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>6}")
    for tower in towers:
        for batching in ("on", "off"):
            for conns in (1, args.connections):
                s = results[tower][f"batching_{batching}_{conns}conn"]
                print(f"{tower:6} {'batching ' + batching:12} {conns:5d} {s['rps']:8.2f} {s['p50_ms']:9.1f} {s['p99_ms']:9.1f} {s['errors']:6d}")
        r = results[tower]
        r["served_over_raw"] = r[f"batching_on_{args.connections}conn"]["rps"] / r[f"raw_b{args.max_batch}_items_s"]
        r["batching_speedup_32"] = r[f"batching_on_{args.connections}conn"]["rps"] / r[f"batching_off_{args.connections}conn"]["rps"]
        r["latency_ratio_1conn"] = r["batching_on_1conn"]["p50_ms"] / r["batching_off_1conn"]["p50_ms"]
        print(
            f"{tower:6} raw b1 {r['raw_b1_items_s']:.2f}/s, raw b{args.max_batch} {r[f'raw_b{args.max_batch}_items_s']:.2f}/s, "
            f"raw_batch_gain {r['raw_batch_gain']:.2f}, served_over_raw {r['served_over_raw']:.2f}, "
            f"batching_speedup_32 {r['batching_speedup_32']:.2f} (target >= {0.9 * r['raw_batch_gain']:.2f}), "
            f"latency_ratio_1conn {r['latency_ratio_1conn']:.2f} (target <= 1.1)"
        )
    head = towers[0]
    for key in ("served_over_raw", "batching_speedup_32", "raw_batch_gain", "latency_ratio_1conn"):
        results[key] = results[head][key]
        for tower in towers[1:]:
            results[f"{key}_{tower}"] = results[tower][key]
    final_json(results)


if __name__ == "__main__":
    main()
