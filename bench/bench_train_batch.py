#!/usr/bin/env python
"""The largest batch one training step of a small model reaches under a memory budget:
tiled loss + GradCache-chunked encoders vs open_clip's ClipLoss with whole-batch encoder passes.

Model: a micro open_clip config written by this script (32x32 images, 1-layer 32-wide ViT and
text transformer, context 16, 64-d embeddings, random init), fp32 on CPU: small enough that the
per-pair encoder cost is low and the loss's B x B matrices decide how far open_clip gets. Inputs are synthetic (random pixels, random token ids): this measures memory,
not learning. Each step (forward, backward, AdamW update) runs in a fresh subprocess whose peak
RSS (VmHWM, model + batch + activations + loss) is read from /proc; a watchdog kills it when
RSS passes the budget. Batch sizes double from --start until a step fails or exceeds the
budget or --max-seconds.

    .venv/bin/python bench/bench_train_batch.py --quick          # budget 2 GiB, ~1 min
    .venv/bin/python bench/bench_train_batch.py --budget-gib 12   # the machine-sized answer

Ends with one JSON line: max_batch_tiled_chunked, max_batch_open_clip, batch_ratio, ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import final_json  # noqa: E402
from bench_loss_memory import _status_kib, _watchdog  # noqa: E402

GIB = 1024**3
MICRO_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def micro_config_path() -> str:
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "omnivec-bench-micro.json")
    with open(path, "w") as f:
        json.dump(MICRO_CONFIG, f)
    return path


def worker(method: str, batch: int, chunk: int, tile: int, budget: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _watchdog(budget)
    import torch

    torch.set_num_threads(1)
    from open_clip.loss import ClipLoss

    from omnivec.finetune.chunked import chunked_backward
    from omnivec.finetune.losses import tiled_clip_loss
    from omnivec.model_export.loader import load_model

    model = load_model(micro_config_path(), "none").model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, 32, 32)
    tokens = torch.randint(1, 49406, (batch, 16))
    tokens[:, 0], tokens[:, 10], tokens[:, 11:] = 49406, 49407, 0
    start = time.perf_counter()
    if method == "open_clip":
        loss_fn = ClipLoss()
        img = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
        loss = loss_fn(img, txt, model.logit_scale.exp())
        loss.backward()
    else:

        def loss_fn(i, t):
            i, t = torch.nn.functional.normalize(i, dim=-1), torch.nn.functional.normalize(t, dim=-1)
            return tiled_clip_loss(i, t, model.logit_scale.exp(), tile_size=tile)

        loss = chunked_backward((model.encode_image, model.encode_text), (images, tokens), loss_fn, chunk)
    optimizer.step()
    return {"ok": True, "loss": float(loss), "seconds": time.perf_counter() - start, "peak_mib": _status_kib("VmHWM") / 1024}


def run(method: str, batch: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(batch), str(args.chunk), str(args.tile), str(int(args.budget_gib * GIB))]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.max_seconds + 60)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"over {args.max_seconds + 60:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (lines[-1] if lines else proc.stderr.strip().splitlines()[-1:] or ["killed"])
        return {"ok": False, "error": str(last)[:200]}
    result = json.loads(lines[-1])
    if result.get("seconds", 0) > args.max_seconds:
        result = {"ok": False, "error": f"step took {result['seconds']:.0f} s > {args.max_seconds:.0f} s", **{k: result[k] for k in ("peak_mib", "seconds")}}
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, batch, chunk, tile, budget = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(worker(method, batch, chunk, tile, budget)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="budget 2 GiB and short steps (about a minute)")
    parser.add_argument("--budget-gib", type=float, help="peak RSS budget per step (default 6; quick 2)")
    parser.add_argument("--start", type=int, default=1024, help="first batch size (default 1024)")
    parser.add_argument("--chunk", type=int, default=512, help="GradCache chunk size (default 512)")
    parser.add_argument("--tile", type=int, default=2048, help="loss tile size (default 2048)")
    parser.add_argument("--max-seconds", type=float, help="give up on steps slower than this (default 120; quick 20)")
    args = parser.parse_args()
    args.budget_gib = args.budget_gib or (2.0 if args.quick else 6.0)
    args.max_seconds = args.max_seconds or (20.0 if args.quick else 120.0)

    figures: dict = {"model": "micro (see MICRO_CONFIG)", "budget_gib": args.budget_gib, "chunk": args.chunk, "tile": args.tile}
    print(f"{'method':16} {'batch':>7} {'peak MiB':>9} {'seconds':>8}  result")
    for method in ("open_clip", "tiled_chunked"):
        best, batch = None, args.start
        while True:
            r = run(method, batch, args)
            status = "ok" if r.get("ok") else r.get("error", "failed")
            print(f"{method:16} {batch:7d} {r.get('peak_mib', float('nan')):9.0f} {r.get('seconds', float('nan')):8.2f}  {status}", flush=True)
            if not r.get("ok"):
                figures[f"{method}_stopped_at"] = {"batch": batch, "reason": status}
                break
            best = {"batch": batch, **r}
            batch *= 2
        figures[f"max_batch_{method}"] = best["batch"] if best else 0
        figures[f"{method}_at_max"] = best
    a, b = figures["max_batch_tiled_chunked"], figures["max_batch_open_clip"]
    figures["batch_ratio"] = float(a / b) if b else None
    print(f"\nlargest batch within {args.budget_gib} GiB: tiled+chunked {a}, open_clip {b}")
    final_json(figures)


if __name__ == "__main__":
    main()
