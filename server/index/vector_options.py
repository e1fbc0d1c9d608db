"""How a collection stores and searches its vectors: quantisation, placement, HNSW shape.

Chosen once, at creation, and kept with the collection's metadata. Both engines translate the same
`VectorOptions` into their own configuration (Qdrant Edge's `EdgeConfig`, a Qdrant server's
collection config), so a collection behaves the same on either. A quantised collection is searched
on its compact copy first, `oversampling` x top_k candidates, which are then rescored with the
original float vectors: that keeps recall near the float index while the hot data shrinks 4x (int8)
or 32x (binary).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping

from .errors import InvalidRequest

__all__ = ["VectorOptions", "Quantization", "QUANTIZATIONS", "DEFAULT_OVERSAMPLING", "INT8_QUANTILE", "HNSW_M_RANGE", "HNSW_EF_RANGE", "OVERSAMPLING_RANGE"]

Quantization = Literal["none", "int8", "binary"]
QUANTIZATIONS: tuple[str, ...] = ("none", "int8", "binary")
# Candidates fetched from the quantised copy per result, before rescoring with the float vectors.
# Binary keeps 1 bit per dimension and needs a wider net than int8 (see bench/bench_scale.py).
DEFAULT_OVERSAMPLING = {"none": None, "int8": 2.0, "binary": 3.0}
INT8_QUANTILE = 0.99  # int8 range from the 0.5-99.5 % quantiles of the values: outliers clip, the rest keep resolution
HNSW_M_RANGE = (4, 128)
HNSW_EF_RANGE = (4, 4096)
OVERSAMPLING_RANGE = (1.0, 16.0)


@dataclass(frozen=True)
class VectorOptions:
    """`hnsw_m`/`hnsw_ef_construct`/`hnsw_ef` None: the engine's default (for Edge: `index.hnsw_m`/`hnsw_ef_construct`/`hnsw_ef`).
    `hnsw_ef` is the search-time beam width: wider finds more of the true neighbours in a large graph, at some latency."""

    quantization: Quantization = "none"
    oversampling: float | None = None
    on_disk: bool = False
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    hnsw_ef: int | None = None

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise InvalidRequest(f"quantization must be one of {list(QUANTIZATIONS)}, got {self.quantization!r}")
        if self.oversampling is not None:
            if self.quantization == "none":
                raise InvalidRequest("oversampling only applies to a quantised collection; set quantization to 'int8' or 'binary', or drop oversampling")
            _check_range("oversampling", self.oversampling, OVERSAMPLING_RANGE)
        if self.hnsw_m is not None:
            _check_range("hnsw.m", self.hnsw_m, HNSW_M_RANGE)
        if self.hnsw_ef_construct is not None:
            _check_range("hnsw.ef_construct", self.hnsw_ef_construct, HNSW_EF_RANGE)
        if self.hnsw_ef is not None:
            _check_range("hnsw.ef", self.hnsw_ef, HNSW_EF_RANGE)

    @property
    def quantized(self) -> bool:
        return self.quantization != "none"

    @property
    def effective_oversampling(self) -> float | None:
        """The oversampling searches use: the chosen one, else the quantisation's default."""
        return self.oversampling if self.oversampling is not None else DEFAULT_OVERSAMPLING[self.quantization]

    @property
    def is_default(self) -> bool:
        return self == VectorOptions()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> "VectorOptions":
        """What a collection stored; absent (collections made before these options) is the default."""
        if not raw:
            return cls()
        known = {k: raw[k] for k in ("quantization", "oversampling", "on_disk", "hnsw_m", "hnsw_ef_construct", "hnsw_ef") if k in raw}
        return cls(**known)


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}")
