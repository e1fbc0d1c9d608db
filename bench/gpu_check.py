"""GPU check of a bundle: each tower on a GPU execution provider against the CPU, in one command.

Needs only onnxruntime (onnxruntime-gpu on the GPU machine) and numpy (onnx for the fp16
conversion, which onnxruntime itself depends on); it reads the bundle's manifest.json and
probes.npz directly, so nothing else of omnivec has to be installed there.

Per tower, for fp32 and fp16 (the fp32 graph converted with onnxruntime's float16 tool,
inputs and outputs kept fp32):
  probe     the load-time parity probe the server runs: cosine to the PyTorch fp32 references
            stored in the bundle, on the provider, against the bundle's threshold for that arithmetic
  vs_cpu    cosine of the provider's embeddings to the CPU provider's, same inputs
  items_s   throughput at batch 1, 32 and 256 (the probe inputs tiled), after warm-up
Also each int8 variant's probe on this host's CPU (its integer kernels are the CPU's, not the GPU's).

    python bench/gpu_check.py BUNDLE_DIR OUT_DIR                       # CUDA provider
    python bench/gpu_check.py BUNDLE_DIR OUT_DIR --provider CPUExecutionProvider --quick   # a dry run without a GPU

Writes OUT_DIR/gpu_check.json and prints the same figures as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ARITHMETIC_FALLBACK = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def _session(model: str | bytes, provider: str, threads: int, fp16: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if fp16 and provider == "CPUExecutionProvider":  # onnxruntime 1.32's CPU layout optimiser segfaults on fp16 conv graphs
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if threads:
        options.intra_op_num_threads = threads
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    session = ort.InferenceSession(model, sess_options=options, providers=providers)
    if session.get_providers()[0] != provider:
        raise SystemExit(f"{provider} did not initialise (got {session.get_providers()}); see onnxruntime's log above")
    return session


def _run(session, inputs: dict[str, np.ndarray]) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return np.asarray(session.run(None, {n: inputs[n] for n in names})[0], dtype=np.float32)


def _tile(inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    rows = len(next(iter(inputs.values())))
    index = np.arange(batch) % rows
    return {k: np.ascontiguousarray(v[index]) for k, v in inputs.items()}


def _items_per_s(session, inputs: dict[str, np.ndarray], batch: int, seconds: float) -> float:
    feed = _tile(inputs, batch)
    for _ in range(3):  # warm-up: CUDA kernels, cuDNN algorithm search, memory arena
        _run(session, feed)
    reps, start = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - start < seconds:
        _run(session, feed)
        reps += 1
    return reps * batch / (time.perf_counter() - start)


def _fp16(path: Path) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    return model.SerializeToString()


def _probe(bundle: Path, manifest: dict, modality: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    probes = manifest.get("probes")
    if not probes:
        raise SystemExit(f"{bundle} has no probes (format_version {manifest.get('format_version')}); re-export it with `omnivec export`")
    with np.load(bundle / probes["file"]) as data:
        arrays = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith(f"{modality}.")}
    return arrays, arrays.pop("reference")


def check(bundle: Path, provider: str, batches: list[int], seconds: float, threads: int) -> dict:
    import onnxruntime as ort

    manifest = json.loads((bundle / "manifest.json").read_text())
    thresholds = {**ARITHMETIC_FALLBACK, **(manifest.get("probes") or {}).get("min_cos", {})}
    report: dict = {
        "bundle": str(bundle),
        "model": manifest.get("model_name"),
        "provider": provider,
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "towers": {},
    }
    try:
        import subprocess

        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        report["gpu"] = gpu.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        report["gpu"] = None
    for modality, tower in manifest["towers"].items():
        inputs, reference = _probe(bundle, manifest, modality)
        path = bundle / tower["file"]
        cpu = _session(str(path), "CPUExecutionProvider", threads)
        cpu_out = _run(cpu, inputs)
        entry: dict = {"cpu_probe_cos_min": float(_cos(cpu_out, reference).min())}
        for arithmetic, model in (("fp32", str(path)), ("fp16", _fp16(path))):
            session = _session(model, provider, threads, fp16=arithmetic == "fp16")
            out = _run(session, inputs)
            cos = _cos(out, reference)
            entry[arithmetic] = {
                "probe": {
                    "n": int(len(cos)),
                    "cos_min": float(cos.min()),
                    "cos_mean": float(cos.mean()),
                    "threshold": thresholds[arithmetic],
                    "passed": bool(cos.min() >= thresholds[arithmetic]),
                },
                "vs_cpu_cos_min": float(_cos(out, cpu_out).min()),
                "items_s": {f"b{b}": _items_per_s(session, inputs, b, seconds) for b in batches},
            }
            print(f"{modality:6} {arithmetic} on {provider}: probe cos_min {cos.min():.6f}, "
                  + ", ".join(f"{k} {v:.1f}/s" for k, v in entry[arithmetic]["items_s"].items()), file=sys.stderr, flush=True)
        entry["cpu_items_s"] = {f"b{b}": _items_per_s(cpu, inputs, b, seconds) for b in batches if b <= 32}
        for variant, file in tower.get("variants", {}).items():  # int8 runs on this host's CPU integer kernels
            q = _run(_session(str(bundle / file), "CPUExecutionProvider", threads), inputs)
            cos = _cos(q, reference)
            entry[f"cpu_{variant}_probe"] = {"cos_min": float(cos.min()), "threshold": thresholds.get(variant), "passed": bool(cos.min() >= thresholds.get(variant, 0))}
        report["towers"][modality] = entry
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="a bundle directory (omnivec export)")
    parser.add_argument("out", type=Path, help="folder for gpu_check.json (created)")
    parser.add_argument("--provider", default="CUDAExecutionProvider", help="execution provider to check (default CUDAExecutionProvider)")
    parser.add_argument("--batches", default="1,32,256", help="batch sizes for items/s (default 1,32,256)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput figure (default 3, --quick 0.5)")
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (default: onnxruntime's choice)")
    parser.add_argument("--quick", action="store_true", help="short throughput phases")
    args = parser.parse_args()
    if args.provider != "CPUExecutionProvider":
        try:  # onnxruntime-gpu finds the CUDA libraries that torch's nvidia-* packages bring
            import onnxruntime as ort

            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - older onnxruntime, or libraries elsewhere on the path
            print(f"preload_dlls: {exc}", file=sys.stderr)
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    report = check(args.bundle, args.provider, [int(b) for b in args.batches.split(",")], seconds, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
