"""onnxruntime implementation of the Encoder protocol."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

log = logging.getLogger("omnivec.inference")

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def tensorrt_defaults(cache_dir: Path) -> dict[str, str]:
    """TensorRT options that keep built engines across restarts (else every start rebuilds them)."""
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
    }


def session_providers(
    wanted: list[str] | None,
    options: Mapping[str, Mapping[str, str]] | None = None,
    *,
    available: list[str] | None = None,
    tensorrt_cache: Path | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) pairs for an InferenceSession: the wanted providers this onnxruntime
    build has, in order, with their options; a wanted provider it lacks is logged, not fatal,
    so one configuration serves CPU and GPU nodes. CPU is always last as the fallback."""
    have = available if available is not None else ort.get_available_providers()
    chosen: list[tuple[str, dict[str, str]]] = []
    for name in wanted or ["CPUExecutionProvider"]:
        if name not in have:
            log.warning("%s is not available in this onnxruntime build (it has %s); skipping it", name, ", ".join(have))
            continue
        opts = dict(tensorrt_defaults(tensorrt_cache)) if name == "TensorrtExecutionProvider" and tensorrt_cache else {}
        opts.update({k: str(v) for k, v in (options or {}).get(name, {}).items()})
        chosen.append((name, opts))
    if not any(name == "CPUExecutionProvider" for name, _ in chosen):
        chosen.append(("CPUExecutionProvider", dict((options or {}).get("CPUExecutionProvider", {}))))
    return chosen


class OnnxEncoder:
    """One tower in one onnxruntime InferenceSession (thread-safe for concurrent `run` calls)."""

    def __init__(
        self,
        path: Path,
        modality: str,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        providers: list[str] | None = None,
        provider_options: Mapping[str, Mapping[str, str]] | None = None,
        tensorrt_cache: Path | None = None,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = session_providers(providers, provider_options, tensorrt_cache=tensorrt_cache)
        if tensorrt_cache is not None and any(name == "TensorrtExecutionProvider" for name, _ in chosen):
            tensorrt_cache.mkdir(parents=True, exist_ok=True)
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=[name for name, _ in chosen], provider_options=[opts for _, opts in chosen]
        )
        self.modality = modality
        self.path = Path(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._input_dtypes = {i.name: _DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()}
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        self.dim = int(output.shape[-1])
        self.providers = self.session.get_providers()

    def encode(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=self._input_dtypes[name]) for name in self.input_names}
        (out,) = self.session.run([self.output_name], feed)
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
