"""TowerRunner: how a service gets rows through a tower without blocking the event loop.

`DirectRunner` runs each call on a worker thread as it comes. A batching runner (same
interface) can merge rows from concurrent requests; services never know which one they have.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Protocol

import numpy as np

from .encoder import Encoder
from .sequences import Sequences, run_grouped


class TowerRunner(Protocol):
    encoder: Encoder

    async def run(self, inputs: Mapping[str, np.ndarray], sequences: Sequences | None = None) -> np.ndarray:
        """Embeddings for the given rows (leading axis), in order. `sequences` marks
        trailing-padded variable-length rows (text on a dynamic-length tower)."""
        ...

    async def close(self) -> None:
        ...


class DirectRunner:
    """One model call per request, on a dedicated thread pool (no cross-request batching)."""

    def __init__(self, encoder: Encoder, executor: ThreadPoolExecutor) -> None:
        self.encoder = encoder
        self._executor = executor

    async def run(self, inputs: Mapping[str, np.ndarray], sequences: Sequences | None = None) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if sequences is not None:
            return await loop.run_in_executor(self._executor, run_grouped, self.encoder.encode, inputs, sequences.lengths)
        return await loop.run_in_executor(self._executor, self.encoder.encode, inputs)

    async def close(self) -> None:
        return None
