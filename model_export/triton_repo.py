"""A Triton Inference Server model repository from a bundle: one Triton model per tower.

Triton then runs the towers (its onnxruntime backend, optionally with TensorRT acceleration on
GPUs, its own dynamic batching and instance groups) while `omnivec serve` with
`OMNIVEC_MODEL__BACKEND=triton` keeps everything else: preprocessing, tokenizer, space id,
index, API. The bundle stays the contract: model names are `<prefix><tower>`, tensor names and
shapes come from the manifest, and the output is always `embeddings`. Torch-free.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from omnivec.server.bundle import ModelBundle, TensorSpec, TowerSpec

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
DEFAULT_PREFIX = "omnivec_"


def triton_model_name(prefix: str, modality: str) -> str:
    return f"{prefix}{modality}"


def _tensor(spec: TensorSpec) -> str:
    """One input/output entry; the batch axis is Triton's (max_batch_size), symbolic dims are -1."""
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.shape[1:])
    return f'  {{ name: "{spec.name}" data_type: {TRITON_DTYPES[spec.dtype]} dims: [ {dims} ] }}'


def model_config(name: str, tower: TowerSpec, *, max_batch_size: int, gpu: bool, tensorrt: bool, max_queue_delay_us: int) -> str:
    """config.pbtxt (protobuf text format) for one tower on Triton's onnxruntime backend."""
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        ",\n".join(_tensor(spec) for spec in tower.inputs),
        "]",
        "output [",
        _tensor(tower.output),
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}",
        f"instance_group [ {{ kind: {'KIND_GPU' if gpu else 'KIND_CPU'} count: 1 }} ]",
    ]
    if tensorrt:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [",
            '  { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } }',
            "] } }",
        ]
    return "\n".join(lines) + "\n"


def write_repository(
    bundle_dir: str | Path,
    out: str | Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    precision: str = "fp32",
    max_batch_size: int = 32,
    gpu: bool = False,
    tensorrt: bool = False,
    max_queue_delay_us: int = 2000,
) -> list[Path]:
    """Write (or replace) one model directory per tower under `out`; other models there are kept.

    Each model directory is built beside its final place and renamed into it, so Triton polling
    the repository never sees half a model.
    """
    if tensorrt and not gpu:
        raise ValueError("TensorRT acceleration needs GPU instances: pass gpu=True (--gpu) as well")
    bundle = ModelBundle.load(bundle_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for modality, tower in bundle.manifest.towers.items():
        name = triton_model_name(prefix, modality)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
        (staging / "1").mkdir()
        shutil.copyfile(bundle.tower_path(modality, precision), staging / "1" / "model.onnx")
        config = model_config(name, tower, max_batch_size=max_batch_size, gpu=gpu, tensorrt=tensorrt, max_queue_delay_us=max_queue_delay_us)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        written.append(target)
    return written
