"""Hard-negative batches: group items whose embeddings are near each other (B3 / DiHT family).

Why: a contrastive loss learns only from the negatives inside a batch. Random batches from a
corpus with many distinct classes hold few confusable pairs, so most of the B^2 - B negatives
are already easy and the gradient is small. Building each batch from a neighbourhood of a
nearest-neighbour graph puts confusable pairs (a red circle next to an orange circle, not a
blue star) into the same batch.

The graph's edge weight between items i and j is the cross-modal similarity the loss sees,
``(<media_i, text_j> + <media_j, text_i>) / 2``; items that share a positive group (same
caption or label) are not negatives and are left out of each other's neighbour lists.
Batches are grown greedily: a random unused seed, then repeatedly the unused item with the
largest summed edge weight to the items already in the batch (so every member's batch mates are
its own neighbours, not a breadth-first walk drifting away from the seed), topped up with random
unused items when the neighbourhood runs dry. Cost:
O(N^2 D / block) for the graph (blockwise top-k, never N x N in memory) and O(N k) for batches.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["MiningCost", "neighbour_graph", "mined_batches", "batch_hardness"]


@dataclass
class MiningCost:
    """Seconds spent building one epoch's batches (reported in the fine-tune report)."""

    embed_s: float = 0.0
    graph_s: float = 0.0
    batches_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.embed_s + self.graph_s + self.batches_s


def neighbour_graph(media: np.ndarray, text: np.ndarray, groups: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``(N, k)`` indices of each item's k most similar other items (-1 where fewer exist) and
    the ``(N, k)`` edge weights.

    ``media``/``text``: unit-norm ``(N, D)`` embeddings of the same N pairs; ``groups``: the
    positive group of each pair (pairs in one group are never each other's negatives).
    """
    n = media.shape[0]
    k = max(0, min(k, n - 1))
    out = np.full((n, k), -1, dtype=np.int64)
    weights = np.zeros((n, k), dtype=np.float64)
    if k == 0:
        return out, weights
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = (media[start:stop] @ text.T + text[start:stop] @ media.T) / 2
        same = groups[start:stop, None] == groups[None, :]
        sims[same] = -np.inf  # also removes the item itself
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        w = np.take_along_axis(sims, top, axis=1)
        top[~np.isfinite(w)] = -1
        out[start:stop] = top
        weights[start:stop] = np.where(np.isfinite(w), w, 0.0)
    return out, weights


def mined_batches(neighbours: np.ndarray, weights: np.ndarray, batch_size: int, seed: int, group_size: int | None = None) -> list[list[int]]:
    """Full batches of item indices grown over the neighbour graph; every item used at most once.

    Edge weights are shifted to be positive (1 + w) so that being listed by more members counts.
    With ``group_size`` smaller than the batch, groups of that many mutual neighbours are grown
    instead and packed, in random order, into batches.
    """
    if group_size and group_size < batch_size:
        groups = mined_batches(neighbours, weights, group_size, seed)
        random.Random(seed + 1).shuffle(groups)
        flat = [i for g in groups for i in g]
        return [flat[i : i + batch_size] for i in range(0, len(flat) - batch_size + 1, batch_size)]
    n = neighbours.shape[0]
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    used = np.zeros(n, dtype=bool)
    batches: list[list[int]] = []
    fill = iter(order)  # random top-up, in the same shuffled order
    remaining = n
    for start in order:
        if remaining < batch_size:
            break
        if used[start]:
            continue
        batch = [start]
        used[start] = True
        score: dict[int, float] = {}

        def add_edges(x: int) -> None:
            for j, w in zip(neighbours[x], weights[x]):
                if j >= 0 and not used[j]:
                    score[int(j)] = score.get(int(j), 0.0) + 1.0 + float(w)

        add_edges(start)
        while len(batch) < batch_size:
            while score:
                j = max(score, key=score.__getitem__)
                del score[j]
                if not used[j]:
                    break
            else:
                j = next(x for x in fill if not used[x])
            batch.append(j)
            used[j] = True
            add_edges(j)
        remaining -= batch_size
        batches.append(batch)
    return batches


def batch_hardness(media: np.ndarray, text: np.ndarray, groups: np.ndarray, batches: list[list[int]]) -> float:
    """Mean over items of the highest similarity to a negative text in the same batch.

    Why: the figure that says whether mining did anything; random batches score lower.
    """
    hardest = []
    for batch in batches:
        idx = np.asarray(batch)
        sims = media[idx] @ text[idx].T
        sims[groups[idx, None] == groups[None, idx]] = -np.inf
        best = sims.max(axis=1)
        hardest.extend(best[np.isfinite(best)].tolist())
    return float(np.mean(hardest)) if hardest else float("nan")


def timed(cost: MiningCost, field: str):
    """Context manager adding the elapsed seconds to ``cost.<field>``."""

    class _Timer:
        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            setattr(cost, field, getattr(cost, field) + time.perf_counter() - self.start)

    return _Timer()
