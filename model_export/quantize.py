"""int8 variants of exported towers: per-channel dynamic quantisation of the weights.

Per-channel keeps far more accuracy than per-tensor on real weights (trial here on MiniLM:
cosine 0.992 vs 0.960) and runs about 2.5-3x faster on CPU.

Why 7-bit weights ("reduced range"): dynamic quantisation feeds uint8 activations (0..255)
into integer GEMMs with int8 weights. On x86 CPUs with AVX2 but without VNNI, onnxruntime's
MLAS u8s8 kernel multiplies with `vpmaddubsw`, which adds each *pair* of u8*s8 products into
a signed 16-bit lane with saturation: 255*127*2 = 64770 overflows int16 (max 32767), so
full-range weights silently clip on those CPUs (seen: cos 0.949 on a text tower there, 0.9999
on an AVX-512 VNNI machine, whose `vpdpbusd` sums into 32 bits). Weights in [-64, 64] bound
every pair sum by 2*255*64 = 32640 <= 32767, so no CPU can saturate. The alternative, uint8
weights (U8U8, which MLAS widens to 16 bits before `vpmaddwd`), also cannot saturate;
`bench/bench_text_speed.py` measured both and RESULTS.md has the figures that chose 7-bit.
`pair_sum_bound` checks the property on a written model, so it is tested rather than assumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Scheme = Literal["s8-7bit", "s8", "u8u8"]
DEFAULT_SCHEME: Scheme = "s8-7bit"
INT16_MAX = 32767
U8_MAX = 255  # DynamicQuantizeLinear always yields uint8 activations
INTEGER_GEMMS = ("MatMulInteger", "ConvInteger")


def quantize_int8(src: Path, dst: Path, scheme: Scheme = DEFAULT_SCHEME) -> None:
    """Write `dst`, the per-channel dynamically quantised `src` (see module docstring for `scheme`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    prepared = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        source = prepared
    except Exception:  # pre-processing is an optimisation; quantise the original if it fails
        source = src
    try:
        quantize_dynamic(
            str(source),
            str(dst),
            per_channel=True,
            reduce_range=scheme == "s8-7bit",
            weight_type=QuantType.QUInt8 if scheme == "u8u8" else QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


@dataclass
class PairSumBound:
    """The worst 16-bit pair sum any integer GEMM of a model can form on an AVX2 u8s8 kernel."""

    gemms: int  # integer GEMM nodes (MatMulInteger / ConvInteger) found
    s8_gemms: int  # of those, with int8 weights (the ones an AVX2 u8s8 kernel runs with vpmaddubsw)
    max_abs_weight: int  # largest |int8 weight| among them
    worst_pair_sum: int  # 2 * 255 * max_abs_weight

    @property
    def saturation_free(self) -> bool:
        return self.worst_pair_sum <= INT16_MAX


def pair_sum_bound(path: Path) -> PairSumBound:
    """Read the quantised weights of every integer GEMM and bound `vpmaddubsw`'s pair sums.

    Activations are uint8 (0..255); uint8 weights go to the U8U8 kernel, which widens to 16
    bits before multiplying and cannot saturate, so only int8 weights count."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {init.name: init for init in model.graph.initializer}
    gemms = s8 = 0
    max_abs = 0
    for node in model.graph.node:
        if node.op_type not in INTEGER_GEMMS:
            continue
        gemms += 1
        weight_name = node.input[1]  # MatMulInteger(A, B, ...), ConvInteger(x, w, ...)
        init = weights.get(weight_name)
        if init is None:
            raise ValueError(f"{node.op_type} {node.name}: weight {weight_name!r} is not an initializer; cannot bound it")
        w = numpy_helper.to_array(init)
        if w.dtype == np.uint8:
            continue
        s8 += 1
        max_abs = max(max_abs, int(np.abs(w.astype(np.int32)).max()))
    return PairSumBound(gemms, s8, max_abs, 2 * U8_MAX * max_abs)
