"""Variable-length rows (text tokens) in batched model calls: merge, and split by length.

A tower with a dynamic sequence axis costs about rows x longest-row tokens per call. Rows from
different requests are merged by padding to the longest, and a batch whose lengths differ a lot
is cut into a few calls of similar length, so one long text does not make 31 short ones pay
for its length. Rows are trailing-padded, so a row's first `length` positions are all there
is to it and slicing or extending the padding never changes its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

# Fixed cost of one model call (onnxruntime dispatch, merging, the thread hop), in row-tokens:
# a call of b rows x L tokens costs about (b*L + overhead) token-times. bench/bench_text_speed.py
# measures the onnxruntime part (about 9 on MiniLM here); a larger value only makes the split
# more reluctant, never wrong, so the Python side is covered with a margin.
CALL_OVERHEAD_TOKENS = 16


@dataclass
class Sequences:
    """Per-row true lengths of trailing-padded inputs and the value each input is padded with."""

    lengths: np.ndarray
    pad_values: Mapping[str, int]


def merge(parts: Sequence[Mapping[str, np.ndarray]], pad_values: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Stack row blocks of possibly different padded widths into one block of the widest."""
    width = max(next(iter(p.values())).shape[1] for p in parts)
    rows = sum(len(next(iter(p.values()))) for p in parts)
    merged: dict[str, np.ndarray] = {}
    for name in parts[0]:
        first = parts[0][name]
        out = np.full((rows, width, *first.shape[2:]), pad_values.get(name, 0), dtype=first.dtype)
        offset = 0
        for part in parts:
            block = part[name]
            out[offset : offset + len(block), : block.shape[1]] = block
            offset += len(block)
        merged[name] = out
    return merged


def plan_calls(lengths: np.ndarray, overhead: int = CALL_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Row indices for each model call: rows sorted by length and cut into contiguous groups so
    that sum over calls of (rows x longest + overhead) is minimal (exact dynamic programme)."""
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(lengths, kind="stable")
    sorted_len = np.asarray(lengths, dtype=np.int64)[order]
    best = np.zeros(n + 1, dtype=np.int64)
    cut = np.zeros(n + 1, dtype=np.int64)
    starts = np.arange(n, dtype=np.int64)
    for end in range(1, n + 1):  # best[end]: cheapest plan for the `end` shortest rows
        costs = best[:end] + (end - starts[:end]) * sorted_len[end - 1] + overhead
        k = int(np.argmin(costs))
        best[end], cut[end] = costs[k], k
    groups: list[np.ndarray] = []
    end = n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def take(inputs: Mapping[str, np.ndarray], rows: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """The given rows, trimmed to `width` positions (all of their real tokens)."""
    return {name: np.ascontiguousarray(array[rows, :width]) for name, array in inputs.items()}


Encode = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def run_grouped(encode: Encode, inputs: Mapping[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """`encode` over rows grouped by length (one call per group); rows come back in input order."""
    groups = plan_calls(lengths)
    if len(groups) == 1:
        width = int(lengths.max())
        return encode(take(inputs, np.arange(len(lengths)), width) if width < next(iter(inputs.values())).shape[1] else dict(inputs))
    out: np.ndarray | None = None
    for rows in groups:
        part = encode(take(inputs, rows, int(lengths[rows].max())))
        if out is None:
            out = np.empty((len(lengths), *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    assert out is not None
    return out
