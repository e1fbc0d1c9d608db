"""Request and response models of a collection's vector options (quantisation, placement, HNSW, dimensions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ..index.vector_options import DEFAULT_OVERSAMPLING, HNSW_EF_RANGE, HNSW_M_RANGE, OVERSAMPLING_RANGE

Encoding = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]
ENCODING_DOC = (
    "float: numbers; base64: little-endian float32 bytes, base64-encoded; int8: round(127 x) (cosine ~ dot / 127^2); uint8: int8 + 128; "
    "ubinary: sign bits packed 8 per byte, first component in the highest bit (compare by Hamming distance); binary: those bytes - 128. "
    "See the README's 'Compact encodings'"
)


class HnswIn(BaseModel):
    """The HNSW graph's shape; omitted fields keep the engine's defaults (Edge: m 16, ef_construct 100)."""

    model_config = ConfigDict(extra="forbid")
    m: StrictInt | None = Field(None, ge=HNSW_M_RANGE[0], le=HNSW_M_RANGE[1], description="edges per node: more = better recall, more memory (~m x 8 bytes per vector)")
    ef_construct: StrictInt | None = Field(None, ge=HNSW_EF_RANGE[0], le=HNSW_EF_RANGE[1], description="build-time beam width: more = better graph, slower build")
    ef: StrictInt | None = Field(
        None, ge=HNSW_EF_RANGE[0], le=HNSW_EF_RANGE[1], description="search-time beam width: more = better recall on large collections, slower searches (omitted: the server's index.hnsw_ef, 256)"
    )


class VectorOptionsIn(BaseModel):
    """How a new collection keeps and searches its vectors. All optional: omitted, a collection is as before
    (full-size float32 vectors in RAM, the engine's HNSW defaults)."""

    quantization: Literal["none", "int8", "binary"] = Field(
        "none",
        description="a compact copy searched first: int8 (4x smaller, recall near float) or binary (1 bit per dimension, 32x smaller; holds up "
        "on high-dimensional embeddings, see bench/RESULTS.md); candidates are rescored with the original vectors",
    )
    oversampling: float | None = Field(
        None,
        ge=OVERSAMPLING_RANGE[0],
        le=OVERSAMPLING_RANGE[1],
        description=f"quantised collections: candidates per result fetched from the compact copy before rescoring (default "
        f"int8 {DEFAULT_OVERSAMPLING['int8']:g}, binary {DEFAULT_OVERSAMPLING['binary']:g})",
    )
    on_disk: StrictBool = Field(False, description="keep the float vectors and the HNSW graph on disk (page cache) and only the quantised copy in RAM")
    hnsw: HnswIn | None = None
    dimensions: StrictInt | None = Field(
        None,
        ge=1,
        description="store and search only the first `dimensions` components of each embedding, renormalised. Lossless by design only "
        "for the lengths the model's manifest declares in nested_dims; other lengths work but get a warning",
    )


class HnswOut(BaseModel):
    m: int | None = Field(description="null: the engine's default")
    ef_construct: int | None = Field(description="null: the engine's default")
    ef: int | None = Field(None, description="search-time beam width; null: the server's default (index.hnsw_ef, 256 unless configured)")


class CollectionVectorsOut(BaseModel):
    """How the collection keeps its vectors (chosen at creation)."""

    dimensions: int = Field(description="stored vector length (a prefix of the model's vectors when below model_dim)")
    model_dim: int = Field(description="the creating model's embedding dim")
    quantization: Literal["none", "int8", "binary"]
    oversampling: float | None = Field(description="quantised collections: candidates per result rescored with the original vectors")
    on_disk: bool
    hnsw: HnswOut
