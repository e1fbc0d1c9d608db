"""onnxruntime implementation of the Encoder protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


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
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = set(ort.get_available_providers())
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
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
