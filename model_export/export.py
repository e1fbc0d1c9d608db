"""open_clip model -> model bundle (ONNX towers, tokenizer, manifest, parity report).

The bundle is written to a temporary directory next to `out` and moved into place only when
every tower passes parity, so a failed export never leaves a half-written bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from omnivec.server.bundle import (
    FORMAT_VERSION, MANIFEST_FILE, PARITY_FILE, PROBES_FILE, AudioPreprocess, ImagePreprocess, Manifest, TextPreprocess,
)

from .loader import ExportError, LoadedModel, load_model
from .onnx_export import ENCODERS, SEQUENCE_DIM, export_text_tower, export_tower
from .parity import (
    FP16_MIN_COS, FP32_MIN_COS, INT8_MIN_COS, PARITY_TEXTS, compare, compare_many, onnx_embed, parity_audio, parity_images, text_runs,
)
from .quantize import DEFAULT_SCHEME, pair_sum_bound, quantize_int8

TOWERS = ("image", "text", "audio")
Progress = Callable[[str], None]


@dataclass
class ExportResult:
    out: Path
    manifest: Manifest
    parity: dict


def space_id(model: Any, name: str) -> str:
    """Hash of every weight: two bundles share a space only if their weights are identical."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return f"{name}@{digest.hexdigest()[:16]}"


def image_spec(loaded: LoadedModel) -> ImagePreprocess:
    cfg = loaded.preprocess_cfg
    size = cfg.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ImagePreprocess(
        size=size,
        resize_mode=cfg.get("resize_mode", "shortest"),
        interpolation=cfg.get("interpolation", "bicubic") if cfg.get("interpolation") in ("bicubic", "bilinear") else "bicubic",
        mean=tuple(cfg.get("mean")),
        std=tuple(cfg.get("std")),
        fill_color=int(cfg.get("fill_color", 0)),
    )


def audio_spec(loaded: LoadedModel) -> AudioPreprocess:
    cfg = loaded.model.audio_tower.cfg
    return AudioPreprocess(
        sample_rate=cfg.sample_rate, clip_seconds=cfg.clip_seconds, hop_seconds=cfg.hop_seconds, max_seconds=cfg.max_seconds,
        n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
    )


def available_towers(loaded: LoadedModel) -> list[str]:
    return ["image", "text"] + (["audio"] if hasattr(loaded.model, "audio_tower") else [])


def _text_spec(loaded: LoadedModel) -> TextPreprocess:
    import open_clip

    tok = loaded.tokenizer
    if isinstance(tok, open_clip.tokenizer.HFTokenizer):
        return TextPreprocess(tokenizer="hf", context_length=tok.context_length, cleaning=_clean_name(tok))
    if isinstance(tok, open_clip.tokenizer.SimpleTokenizer):
        if getattr(tok, "reduction_fn", None) is not None:
            raise ExportError("tokenizers with a reduction mask (e.g. SigLIP's random/shuffle reductions) are not supported yet")
        return TextPreprocess(tokenizer="clip-bpe", context_length=tok.context_length, cleaning=_clean_name(tok))
    raise ExportError(f"tokenizer {type(tok).__name__} is not supported yet (supported: open_clip SimpleTokenizer, HFTokenizer)")


def _clean_name(tok: Any) -> str:
    fn = getattr(tok, "clean_fn", None)
    name = getattr(fn, "__name__", "")
    if name.endswith("_lower"):
        return "lower"
    if name.endswith("_whitespace"):
        return "whitespace"
    raise ExportError(f"tokenizer cleaning {name or type(tok).__name__!r} is not supported (supported: lower, whitespace)")


def _write_tokenizer(loaded: LoadedModel, spec: TextPreprocess, path: Path) -> None:
    from .tokenizer import write_clip_tokenizer, write_hf_tokenizer

    if spec.tokenizer == "clip-bpe":
        write_clip_tokenizer(loaded.tokenizer, spec.context_length, path)
    else:
        write_hf_tokenizer(loaded.tokenizer.tokenizer, spec.context_length, path)


def _torch_embed(model: Any, modality: str, batch: Any) -> np.ndarray:
    import torch

    encode = getattr(model, ENCODERS[modality])
    with torch.no_grad():
        out = encode(batch)
    return out.float().numpy()


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise ExportError(f"--out {out} is a non-empty directory that is not a bundle; choose an empty or new directory")


def export_bundle(
    model: str,
    pretrained: str,
    out: Path,
    *,
    towers: Sequence[str] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    loaded: LoadedModel | None = None,
    int8: bool = False,
    scoring_kind: str | None = None,
    nested_dims: Sequence[int] | None = None,
) -> ExportResult:
    """Export `towers` of an open_clip model to a bundle at `out`, refusing any tower below fp32 parity.

    `scoring_kind` ("softmax"/"sigmoid") is what the model was trained for; None guesses from the
    weights (a logit_bias means sigmoid), which is wrong for a SigLIP checkpoint fine-tuned with
    InfoNCE, so the fine-tune loop always passes it. `nested_dims`: the prefix lengths the model
    was trained to support (Matryoshka), recorded in the manifest.
    """
    say = progress or (lambda _msg: None)
    unknown = [t for t in towers or () if t not in TOWERS]
    if unknown or (towers is not None and not towers):
        raise ExportError(f"--towers {','.join(towers or ())}: choose from {','.join(TOWERS)}")
    out = Path(out)
    _check_out_dir(out)

    say(f"loading {model} (pretrained: {pretrained})")
    loaded = loaded or load_model(model, pretrained, seed=seed)
    towers = list(towers) if towers else available_towers(loaded)
    missing = [t for t in towers if t not in available_towers(loaded)]
    if missing:
        raise ExportError(f"{loaded.name} has no {', '.join(missing)} tower; it has: {', '.join(available_towers(loaded))}")
    import torch

    from omnivec.server.preprocess.audio import preprocess_audio
    from omnivec.server.preprocess.image import image_to_array
    from omnivec.server.preprocess.text import TextPreprocessor

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        say("hashing weights for the space id")
        sid = space_id(loaded.model, loaded.name)
        tower_specs: dict[str, dict] = {}
        parity: dict[str, dict] = {"threshold_cos_min": FP32_MIN_COS}
        embed_dim = None
        probes: dict[str, np.ndarray] = {}
        for modality in towers:
            file = f"{modality}.onnx"
            say(f"exporting the {modality} tower to ONNX")
            if modality == "text":
                spec = _text_spec(loaded)
                _write_tokenizer(loaded, spec, work / spec.file)
                arrays = loaded.tokenizer(PARITY_TEXTS)
                fixed = TextPreprocessor(work, spec, ["input_ids", "attention_mask"], max_chars=10**9)(PARITY_TEXTS)
                if not np.array_equal(arrays.numpy(), fixed.arrays["input_ids"]):
                    raise ExportError("the exported tokenizer does not reproduce open_clip's token ids on the parity texts")
                graph = export_text_tower(loaded.model, fixed.arrays, work / file, spec.context_length)
                ours = TextPreprocessor(work, spec, graph.input_names, max_chars=10**9, dynamic=graph.dynamic_sequence)(PARITY_TEXTS)
                onnx_inputs, lengths = ours.arrays, np.asarray(ours.token_counts)
                seq_dim: int | str = SEQUENCE_DIM if graph.dynamic_sequence else spec.context_length
                inputs = [{"name": n, "dtype": "int64", "shape": ["batch", seq_dim]} for n in graph.input_names]
                reference = _torch_embed(loaded.model, modality, arrays)  # PyTorch at the fixed context

                def runs(path: Path) -> list[np.ndarray]:
                    return text_runs(path, onnx_inputs, lengths, graph.dynamic_sequence)
            else:
                if modality == "image":
                    spec = image_spec(loaded)
                    onnx_inputs = {"pixel_values": np.stack([image_to_array(img, spec) for img in parity_images()])}
                    inputs = [{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, *spec.size]}]
                else:
                    spec = audio_spec(loaded)
                    windows = np.concatenate([preprocess_audio(data, spec).windows for data in parity_audio()])
                    onnx_inputs = {"waveform": windows}
                    inputs = [{"name": "waveform", "dtype": "float32", "shape": ["batch", windows.shape[1]]}]
                (input_name, example_array), = onnx_inputs.items()
                example = torch.from_numpy(example_array)
                export_tower(loaded.model, modality, example, input_name, work / file)
                reference = _torch_embed(loaded.model, modality, example)

                def runs(path: Path) -> list[np.ndarray]:
                    return [onnx_embed(path, onnx_inputs)]
            say(f"checking {modality} parity (ONNX vs PyTorch)")
            report = compare_many(reference, runs(work / file))
            parity[modality] = {"fp32": report}
            if report["cos_min"] < FP32_MIN_COS:
                raise ExportError(
                    f"{modality} tower parity too low: cos_min {report['cos_min']:.7f} < {FP32_MIN_COS}; the ONNX graph "
                    "does not reproduce the PyTorch model (please report this with the model config)"
                )
            embed_dim = reference.shape[1]
            probes.update({f"{modality}.{name}": array for name, array in onnx_inputs.items()})
            probes[f"{modality}.reference"] = reference.astype(np.float32)
            variants = {}
            if int8:
                say(f"quantising the {modality} tower to int8 (per-channel, dynamic, 7-bit weights)")
                int8_file = f"{modality}.int8.onnx"
                quantize_int8(work / file, work / int8_file, DEFAULT_SCHEME)
                q_report = compare_many(reference, runs(work / int8_file))
                bound = pair_sum_bound(work / int8_file)
                q_report.update(scheme=DEFAULT_SCHEME, worst_pair_sum=bound.worst_pair_sum, saturation_free=bound.saturation_free)
                q_report["shipped"] = q_report["cos_min"] >= INT8_MIN_COS and bound.saturation_free
                if q_report["shipped"]:
                    variants["int8"] = int8_file
                else:
                    q_report["reason"] = (
                        f"cos_min {q_report['cos_min']:.4f} < {INT8_MIN_COS}: int8 loses too much; this tower serves fp32"
                        if bound.saturation_free
                        else f"an int8 pair sum can reach {bound.worst_pair_sum} > 32767 (saturates on AVX2 CPUs); this tower serves fp32"
                    )
                    (work / int8_file).unlink()
                    say(f"not shipping int8 {modality}: {q_report['reason']}")
                parity[modality]["int8"] = q_report
            tower_specs[modality] = {
                "variants": variants,
                "file": file,
                "inputs": inputs,
                "output": {"name": "embeddings", "dtype": "float32", "shape": ["batch", embed_dim]},
                "preprocess": spec.model_dump(),
            }
        np.savez(work / PROBES_FILE, **probes)
        net = loaded.model
        bias = getattr(net, "logit_bias", None)
        kind = scoring_kind or ("sigmoid" if bias is not None else "softmax")
        if kind == "sigmoid" and bias is None:
            raise ExportError("sigmoid scoring needs a logit_bias, and this model has none; export with softmax scoring")
        manifest = Manifest.model_validate(
            {
                "format_version": FORMAT_VERSION,
                "model_name": loaded.name,
                "space_id": sid,
                "embed_dim": embed_dim,
                "scoring": {
                    "kind": kind,
                    "logit_scale": float(net.logit_scale.exp().item()),
                    "logit_bias": float(bias.item()) if bias is not None and kind == "sigmoid" else None,
                },
                **({"nested_dims": list(nested_dims)} if nested_dims else {}),
                "towers": tower_specs,
                "source": loaded.source,
                "probes": {"file": PROBES_FILE, "min_cos": {"fp32": FP32_MIN_COS, "fp16": FP16_MIN_COS, "int8": INT8_MIN_COS}},
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        (work / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
        (work / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        work.chmod(0o755)
        work.rename(out)
        say(f"wrote bundle {out}")
        return ExportResult(out, manifest, parity)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
