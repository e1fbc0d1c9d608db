"""Encoder speed: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8, same threads, same model.

Measures items/s for the image and text towers of an open_clip model (default ViT-B-32,
random init: speed does not depend on the weights) at batch 1, 8 and 32, the int8 towers'
cosine to PyTorch, and achieved model FLOP/s as a fraction of this machine's sustained
numpy matmul FLOP/s measured in the same run.

    .venv/bin/python bench/bench_encoders.py --quick

The last line is one JSON object with onnx_over_torch_b8, int8_over_fp32_b8, int8_min_cos,
flops_fraction_b32 (and per-tower details).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import blas_info, bundle, final_json, items_per_second, matmul_peak_flops, set_threads_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timings (about a minute once the bundle is cached)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch, onnxruntime and the matmul peak (default 1)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes (default 1,8,32)")
    args = parser.parse_args()
    set_threads_env(args.threads)

    import torch

    from omnivec.model_export.loader import load_model
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.inference.onnx import OnnxEncoder

    torch.set_num_threads(args.threads)
    seconds = 0.5 if args.quick else 3.0
    batches = [int(b) for b in args.batches.split(",")]
    path = bundle(args.model, int8=True)
    manifest = ModelBundle.load(path).manifest
    model = load_model(args.model, "none").model
    rng = np.random.default_rng(0)

    def make_input(modality: str, batch: int) -> np.ndarray:
        if modality == "image":
            h, w = manifest.towers["image"].preprocess.size  # type: ignore[union-attr]
            return rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        ctx = manifest.towers["text"].preprocess.context_length  # type: ignore[union-attr]
        ids = np.zeros((batch, ctx), np.int64)
        ids[:, 0], ids[:, 1:20], ids[:, 20] = 49406, rng.integers(300, 40000, (batch, 19)), 49407
        return ids

    def torch_fn(modality: str, x: np.ndarray):
        t = torch.from_numpy(x)
        encode = model.encode_image if modality == "image" else model.encode_text

        def run():
            with torch.no_grad():
                return encode(t)

        return run

    from torch.utils.flop_counter import FlopCounterMode

    figures: dict = {"model": args.model, "threads": args.threads, "blas": blas_info()}
    rows = []
    int8_cos = []
    achieved_b32 = []
    for modality in ("image", "text"):
        fp32 = OnnxEncoder(path / f"{modality}.onnx", modality, intra_op_threads=args.threads)
        int8_file = path / f"{modality}.int8.onnx"
        int8 = OnnxEncoder(int8_file, modality, intra_op_threads=args.threads) if int8_file.is_file() else None
        name = fp32.input_names[0]
        probe = make_input(modality, 1)
        with FlopCounterMode(display=False) as counter:
            torch_fn(modality, probe)()
        flops_per_item = counter.get_total_flops()
        for batch in batches:
            x = make_input(modality, batch)
            reps = 1 if args.quick and batch >= 32 else 2
            t_torch = items_per_second(torch_fn(modality, x), batch, seconds, reps)
            t_fp32 = items_per_second(lambda: fp32.encode({name: x}), batch, seconds, reps)
            t_int8 = items_per_second(lambda: int8.encode({name: x}), batch, seconds, reps) if int8 else float("nan")
            rows.append((modality, batch, t_torch, t_fp32, t_int8))
            figures[f"{modality}_b{batch}_items_s"] = {"torch": t_torch, "onnx_fp32": t_fp32, "onnx_int8": t_int8}
            if batch == 32:
                achieved_b32.append(t_fp32 * flops_per_item)
        if int8:
            x = make_input(modality, 16)
            with torch.no_grad():
                ref = torch_fn(modality, x)().numpy()
            out = int8.encode({name: x})
            cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
            int8_cos.append(float(cos.min()))
        figures[f"{modality}_gflops_per_item"] = flops_per_item / 1e9

    peak = matmul_peak_flops(args.threads, seconds=1.0 if args.quick else 3.0)
    print(f"\n{args.model}, {args.threads} thread(s); numpy matmul peak {peak / 1e9:.1f} GFLOP/s ({figures['blas']})\n")
    print(f"{'tower':6} {'batch':>5} {'torch/s':>9} {'onnx/s':>9} {'int8/s':>9} {'onnx/torch':>10} {'int8/fp32':>9}")
    for modality, batch, t_torch, t_fp32, t_int8 in rows:
        print(f"{modality:6} {batch:5d} {t_torch:9.2f} {t_fp32:9.2f} {t_int8:9.2f} {t_fp32 / t_torch:10.2f} {t_int8 / t_fp32:9.2f}")

    def ratio(num: str, den: str, batch: int = 8) -> float:
        vals = [figures[f"{m}_b{batch}_items_s"][num] / figures[f"{m}_b{batch}_items_s"][den] for m in ("image", "text") if f"{m}_b{batch}_items_s" in figures]
        return float(min(vals)) if vals else float("nan")

    figures.update(
        onnx_over_torch_b8=ratio("onnx_fp32", "torch"),
        int8_over_fp32_b8=ratio("onnx_int8", "onnx_fp32"),
        int8_min_cos=min(int8_cos) if int8_cos else float("nan"),
        flops_fraction_b32=float(max(achieved_b32) / peak) if achieved_b32 else float("nan"),
        matmul_peak_gflops=peak / 1e9,
    )
    print("\nratios at batch 8 are the minimum over the two towers; flops_fraction_b32 is the better tower's fp32 ONNX")
    final_json(figures)


if __name__ == "__main__":
    main()
