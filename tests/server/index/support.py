"""Shared pieces of the index test files: engines on temp dirs, vectors with known neighbours."""

from __future__ import annotations

import numpy as np

from omnivec.server.index import EdgeIndexStore, IndexStore, Point

DIM = 16


def _edge(path, **kw):
    return EdgeIndexStore(path, search_threads=1, indexing_threads=1, **kw)


def clustered(n: int, dim: int = DIM, k: int = 8, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Gaussian-mixture vectors, L2-normalised (realistic: embeddings cluster)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    x = centers[rng.integers(0, k, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(data: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = data @ (q / np.linalg.norm(q))
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


def make(store: IndexStore, name: str = "c", dim: int = DIM, **kw):
    return store.create_collection(name, dim, space_id=kw.pop("space_id", "space-a"), model="m-1", **kw)


def fill(store: IndexStore, name: str, vecs: np.ndarray, payload=lambda i: {"i": i}) -> list[str]:
    ids = [f"p{i}" for i in range(len(vecs))]
    store.upsert(name, [Point(ids[i], vecs[i], payload(i)) for i in range(len(vecs))])
    return ids

