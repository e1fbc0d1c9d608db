"""Output encodings of embeddings (/v1/embed `encoding`, /v1/embeddings `encoding_format`).

For clients that store vectors elsewhere and want them small; compared as the README says:

* `float`: JSON numbers; `base64`: the little-endian float32 bytes, base64-encoded (4 bytes/dim).
* `int8`: round(127 x) per component, in [-127, 127] (1 byte/dim). A unit vector's components lie in
  [-1, 1], so this fixed scale never clips and vectors from different requests stay comparable:
  cosine ~ dot(a, b) / 127^2, with an error of about sqrt(2/12)/127 ~ 0.003 (rounding, per pair).
* `uint8`: the int8 value + 128, in [1, 255]; subtract 128 before the dot product.
* `ubinary`: the sign bits (component > 0 -> 1) packed 8 per byte, first component in the highest bit
  (numpy `packbits`), ceil(dim/8) bytes as integers 0..255. Compare by Hamming distance (popcount of
  XOR): fewer differing bits = more similar; a coarse first pass, best rescored with float vectors.
* `binary`: the same bytes as signed integers (byte - 128), as sentence-transformers and Infinity write them.
"""

from __future__ import annotations

import base64

import numpy as np

__all__ = ["ENCODINGS", "INT8_SCALE", "encode_vector"]

ENCODINGS = ("float", "base64", "int8", "uint8", "binary", "ubinary")
INT8_SCALE = 127  # int8 = round(INT8_SCALE * x): clip-free for unit vectors


def encode_vector(vector: np.ndarray, encoding: str) -> list[float] | list[int] | str:
    """One unit vector in the named encoding (see the module docstring for how to compare each)."""
    x = np.asarray(vector, dtype=np.float32)
    if encoding == "base64":
        return base64.b64encode(x.astype("<f4").tobytes()).decode("ascii")
    if encoding in ("int8", "uint8"):
        q = np.clip(np.rint(x * INT8_SCALE), -INT8_SCALE, INT8_SCALE).astype(np.int16)
        return (q + 128 if encoding == "uint8" else q).tolist()
    if encoding in ("binary", "ubinary"):
        packed = np.packbits(x > 0).astype(np.int16)
        return (packed - 128 if encoding == "binary" else packed).tolist()
    return [float(v) for v in x]
