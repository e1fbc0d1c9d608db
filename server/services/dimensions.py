"""Shorter vectors: the first `d` components of an embedding, renormalised (Matryoshka prefixes).

A model trained with nested dimensions (`omnivec finetune --nested-dims`, declared by the manifest's
`nested_dims`) keeps most of its quality at those prefix lengths; any other model still gives a
valid unit vector, but one it was never trained to use, so callers are warned. Used by `/v1/embed`,
`/v1/embeddings` and collections created with `dimensions` (whose added items and queries are cut
here, in the service layer, so every engine stores and searches the same prefix).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..bundle import Manifest
from ..errors import ErrorCode, OmnivecError
from ..index.store import CollectionMeta

__all__ = ["MODEL_DIM_KEY", "check_dimensions", "nested_warning", "prefix", "fit_to_collection"]

MODEL_DIM_KEY = "model_dim"  # collection metadata: the creating model's full dim (absent: the collection's dim)


def check_dimensions(dimensions: int | None, manifest: Manifest, field: str = "dimensions") -> int:
    """The prefix length to serve: `dimensions`, or the model's dim when None; 422 outside 1..dim."""
    if dimensions is None:
        return manifest.embed_dim
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= manifest.embed_dim:
        raise OmnivecError(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be an integer between 1 and the model's dim {manifest.embed_dim}, got {dimensions!r}"
            + (f"; the model was trained for {manifest.nested_dims}" if manifest.nested_dims else ""),
        )
    return dimensions


def nested_warning(dimensions: int, manifest: Manifest) -> str | None:
    """A warning when `dimensions` is a prefix the model was not trained for; None when it is lossless by design."""
    if dimensions >= manifest.embed_dim or dimensions in (manifest.nested_dims or ()):
        return None
    declared = f"declares nested_dims {manifest.nested_dims}" if manifest.nested_dims else "declares no nested_dims"
    return (
        f"dimensions {dimensions} keeps a prefix of {manifest.model_name}'s {manifest.embed_dim}-d embeddings, but its manifest {declared}: "
        "the model was not trained to work at that length and search quality may drop well below the full vectors. Use one of the declared "
        f"lengths, or a model fine-tuned with `omnivec finetune --nested-dims ...,{dimensions},{manifest.embed_dim}`."
    )


def prefix(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """The first `dimensions` components of each row, each renormalised to unit length (rows of zeros stay zero)."""
    cut = np.asarray(vectors, dtype=np.float32)[..., :dimensions]
    norms = np.linalg.norm(cut, axis=-1, keepdims=True)
    return np.divide(cut, norms, out=np.zeros_like(cut), where=norms > 0)


def fit_to_collection(vector: np.ndarray | Sequence[float], meta: CollectionMeta) -> np.ndarray | Sequence[float]:
    """A model-sized vector cut to a shorter collection's prefix; anything else unchanged (the index checks its length)."""
    model_dim = int((meta.extra or {}).get(MODEL_DIM_KEY) or meta.dim)
    if model_dim <= meta.dim or len(vector) != model_dim:
        return vector
    return prefix(np.asarray(vector, dtype=np.float32), meta.dim)
