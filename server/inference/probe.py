"""Load-time parity probes: is the variant about to be served right on *this* machine?

A bundle carries a few inputs per tower with fp32 reference embeddings computed by the
PyTorch model at export. Before a tower serves, its encoder (int8 or fp32, on whatever
execution provider it got: CPU, CUDA, TensorRT fp16) embeds them; a cosine below the bundle's
threshold for that arithmetic means this CPU or GPU computes something else than the export
machine did (e.g. int8 on an AVX2 CPU whose kernel saturates). An int8 tower that fails falls
back to fp32 with a warning; an fp32 tower that fails refuses to start, naming the figure.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..bundle import BundleError, ModelBundle
from .encoder import Encoder

log = logging.getLogger("omnivec.probe")

FP16_OPTIONS = {"TensorrtExecutionProvider": "trt_fp16_enable"}


@dataclass
class ProbeResult:
    """What the probe measured for one tower variant on this host."""

    arithmetic: str  # fp32 | fp16 | int8: which of the bundle's thresholds applies
    n: int
    cos_min: float
    cos_mean: float
    threshold: float
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def arithmetic_of(precision: str, providers: list[str], provider_options: Mapping[str, Mapping[str, str]] | None) -> str:
    """The arithmetic a variant really runs in: int8 weights, fp16 (an fp16-enabled GPU provider
    that is in use), else fp32."""
    if precision == "int8":
        return "int8"
    for provider, option in FP16_OPTIONS.items():
        value = str((provider_options or {}).get(provider, {}).get(option, "")).lower()
        if provider in providers and value in ("1", "true"):
            return "fp16"
    return "fp32"


def run_probe(encoder: Encoder, bundle: ModelBundle, modality: str, arithmetic: str) -> ProbeResult | None:
    """Embed the bundle's probe inputs and compare with the fp32 references (None: no probes)."""
    probes = bundle.manifest.probes
    arrays = bundle.probe_arrays(modality)
    if probes is None or arrays is None:
        return None
    inputs, reference = arrays
    got = np.asarray(encoder.encode(inputs), dtype=np.float64)
    ref = reference.astype(np.float64)
    cos = (got * ref).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    threshold = probes.min_cos.get(arithmetic, probes.min_cos.get("fp32", 0.99999))  # type: ignore[call-overload]
    cos_min = float(cos.min())
    return ProbeResult(arithmetic, int(len(cos)), cos_min, float(cos.mean()), float(threshold), bool(cos_min >= threshold))


def open_checked(
    bundle: ModelBundle,
    modality: str,
    precision: str,
    open_encoder: Callable[[Path], Encoder],
    arithmetic: Callable[[str, Encoder], str],
) -> tuple[Encoder, str, ProbeResult | None]:
    """Open the tower at `precision` (when the bundle has it) and probe it; an int8 variant that
    fails falls back to fp32; an fp32 variant that fails is a BundleError naming the figure."""
    tower = bundle.manifest.towers[modality]  # type: ignore[index]
    order = [precision, "fp32"] if precision != "fp32" and precision in tower.variants else ["fp32"]
    for candidate in order:
        encoder = open_encoder(bundle.tower_path(modality, candidate))
        result = run_probe(encoder, bundle, modality, arithmetic(candidate, encoder))
        if result is None or result.passed:
            return encoder, candidate, result
        encoder.close()
        where = ", ".join(getattr(encoder, "providers", []) or ["this backend"])
        if candidate != "fp32":
            log.warning(
                "%s tower: the %s variant reaches cos_min %.5f on this machine (%s), below the bundle's %.4f; serving fp32 instead",
                modality, candidate, result.cos_min, where, result.threshold,
            )
            continue
        on_cpu_only = set(getattr(encoder, "providers", []) or []) <= {"CPUExecutionProvider"}
        fix = (
            "re-export the bundle (`omnivec export`) and report the CPU if it happens again"
            if on_cpu_only
            else "serve it on CPUExecutionProvider (OMNIVEC_MODEL__PROVIDERS) or without fp16"
        )
        raise BundleError(
            f"{modality} tower fails its load-time parity probe on {where}: cos_min {result.cos_min:.7f} < "
            f"{result.threshold} ({result.arithmetic}) against the export's PyTorch references, so it would serve "
            f"wrong embeddings here; {fix}"
        )
    raise AssertionError("unreachable")
