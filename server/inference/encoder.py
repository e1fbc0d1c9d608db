"""The Encoder protocol: one tower's model call, whatever runs it (onnxruntime, Triton, ...).

Everything above this line (batching, services, API) talks to towers only through this
protocol, so a new runtime is one new class plus the shared contract tests.
"""

from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Runs one tower on a batch. Inputs are named arrays with a leading batch axis; output is (batch, dim)."""

    modality: str
    input_names: list[str]
    dim: int

    def encode(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw (unnormalised) embeddings, float32, one row per input row."""
        ...

    def close(self) -> None:
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows; zero rows stay zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))
