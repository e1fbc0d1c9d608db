"""Dynamic batching: many small concurrent requests become few efficient model calls.

One `BatchingRunner` per tower. Requests put row chunks on a bounded queue; a worker takes
whatever is queued (up to `max_batch` rows) and runs one model call on a worker thread.
While the model is busy, new requests pile up and form the next batch, so batching needs no
fixed wait. When a call ends, the model thread itself takes what queued up meanwhile and runs
it (results go back to the event loop as each call ends): under load the loop is busy with HTTP
work, and waiting for it between calls left the model idle 15-20% of the time at 32
connections. When the queue is empty it lingers up to max_wait for the next row (closed-loop
clients come back one by one; starting on the first keeps the model busy while the loop answers
the rest), and hands the thread back as soon as another tower's call waits for it.
Text rows of a dynamic-length tower carry their lengths: chunks of different widths are merged
by padding, and a batch is cut into a few calls of similar length (`sequences.py`). When the
thread went back, a short extra wait is spent only when recent batches were larger than what
is queued now (concurrent clients are about to resubmit); a lone client after an idle period
never waits. Rows whose request was cancelled (client gone) are dropped before inference;
a failing batch is retried request by request so only the request that breaks the model fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import ErrorCode, OmnivecError
from ..metrics import Metrics
from .encoder import Encoder
from .sequences import Sequences, merge, run_grouped

log = logging.getLogger("omnivec.batcher")


@dataclass
class _Chunk:
    """Up to max_batch consecutive rows of one request."""

    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    sequences: Sequences | None = None


class BatchingRunner:
    """A TowerRunner that merges rows from concurrent requests into batched model calls."""

    def __init__(
        self,
        encoder: Encoder,
        executor: ThreadPoolExecutor,
        *,
        max_batch: int = 32,
        max_queue: int = 1024,
        max_wait_ms: float = 5.0,
        workers: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        self.encoder = encoder
        self.tower = encoder.modality
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_wait = max_wait_ms / 1000.0
        self._executor = executor
        self._workers_wanted = workers
        self._metrics = metrics
        self._queue: deque[_Chunk] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()  # guards the queue: the model thread takes from it too
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._closing = False
        self._recent_batch = 1.0  # EWMA of recent batch sizes: how many rows concurrent clients bring
        self._last_done = 0.0
        self._rows_per_s = 0.0  # EWMA of model throughput, for Retry-After

    # -- public ---------------------------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def run(self, inputs: Mapping[str, np.ndarray], sequences: Sequences | None = None) -> np.ndarray:
        """Embeddings for these rows, in order; 429 when the queue cannot take them."""
        self._ensure_started()
        if self._closing:
            raise OmnivecError(ErrorCode.NOT_READY, "the server is shutting down; retry on another replica", headers={"Retry-After": "1"})
        rows = len(next(iter(inputs.values())))
        if rows == 0:
            return np.zeros((0, self.encoder.dim), np.float32)
        if rows > self.max_queue:
            raise OmnivecError(
                ErrorCode.TOO_MANY_INPUTS,
                f"{rows} {self.tower} inputs can never fit the queue of {self.max_queue} rows; send at most {self.max_queue} per request",
            )
        if self._queued_rows + rows > self.max_queue:
            if self._metrics:
                self._metrics.rejected.labels(self.tower).inc()
            retry = self.retry_after_seconds(rows)
            raise OmnivecError(
                ErrorCode.OVERLOADED,
                f"the {self.tower} queue is full ({self._queued_rows} rows waiting, limit {self.max_queue}); "
                f"retry after {retry} s or send fewer inputs per request",
                headers={"Retry-After": str(retry)},
            )
        loop = asyncio.get_running_loop()
        order = None
        if sequences is not None and rows > self.max_batch:  # chunk similar lengths together
            order = np.argsort(sequences.lengths, kind="stable")
            inputs = {k: v[order] for k, v in inputs.items()}
            sequences = Sequences(sequences.lengths[order], sequences.pad_values)
        chunks = []
        for start in range(0, rows, self.max_batch):
            stop = start + self.max_batch
            part = {k: v[start:stop] for k, v in inputs.items()}
            seq = None
            if sequences is not None:
                seq = Sequences(sequences.lengths[start:stop], sequences.pad_values)
                width = int(seq.lengths.max())
                part = {k: v[:, :width] for k, v in part.items()}  # a chunk of short rows drops the long ones' padding
            chunks.append(_Chunk(part, len(next(iter(part.values()))), loop.create_future(), sequences=seq))
        with self._cond:
            for chunk in chunks:
                self._queue.append(chunk)
                self._queued_rows += chunk.rows
            self._cond.notify()  # a model thread lingering after its last call takes them at once
        self._set_depth()
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            results = await asyncio.gather(*(c.future for c in chunks))
        except asyncio.CancelledError:
            for chunk in chunks:
                chunk.future.cancel()
            raise
        out = results[0] if len(results) == 1 else np.concatenate(results)
        if order is not None:
            restored = np.empty_like(out)
            restored[order] = out
            out = restored
        return out

    def retry_after_seconds(self, rows: int) -> int:
        """How long until the queue has room, from measured throughput (at least 1 s)."""
        if self._rows_per_s <= 0:
            return 1
        return max(1, math.ceil((self._queued_rows + rows - self.max_queue) / self._rows_per_s + 0.5))

    async def close(self) -> None:
        """Stop taking work, finish what is queued, stop the workers."""
        self._closing = True
        with self._cond:
            self._cond.notify_all()
        if self._wakeup is not None:
            self._wakeup.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    # -- worker ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._workers:
            return
        self._wakeup = asyncio.Event()
        self._workers = [asyncio.create_task(self._work(), name=f"omnivec-batcher-{self.tower}-{i}") for i in range(self._workers_wanted)]

    def _set_depth(self) -> None:
        if self._metrics:
            self._metrics.queue_depth.labels(self.tower).set(self._queued_rows)

    def _drop_cancelled(self) -> None:
        with self._cond:
            self._drop_cancelled_locked()

    def _drop_cancelled_locked(self) -> None:
        while self._queue and self._queue[0].future.done():
            chunk = self._queue.popleft()
            self._queued_rows -= chunk.rows
            if self._metrics and chunk.future.cancelled():
                self._metrics.cancelled.labels(self.tower).inc(chunk.rows)

    def _take(self) -> list[_Chunk]:
        """Up to max_batch rows from the head of the queue (loop or model thread)."""
        batch: list[_Chunk] = []
        rows = 0
        with self._cond:
            while self._queue:
                self._drop_cancelled_locked()
                if not self._queue or rows + self._queue[0].rows > self.max_batch:
                    break
                chunk = self._queue.popleft()
                self._queued_rows -= chunk.rows
                batch.append(chunk)
                rows += chunk.rows
        self._set_depth()
        return batch

    async def _maybe_wait(self) -> None:
        """Wait briefly for concurrent clients only when recent batches show they exist."""
        idle_for = time.monotonic() - self._last_done
        if self.max_wait <= 0 or idle_for > 10 * self.max_wait:
            return  # idle model: a lone request goes straight through
        target = min(self.max_batch, int(self._recent_batch + 0.5))
        deadline = time.monotonic() + self.max_wait
        assert self._wakeup is not None
        while self._queued_rows < target and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_cancelled()
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._maybe_wait()
            batch = self._take()
            if batch:
                await self._run_batch(batch)

    def _encode_chunks(self, batch: list[_Chunk]) -> np.ndarray:
        """One batch's model call(s), on a worker thread: variable-length rows are merged and
        regrouped by length; fixed-shape rows are concatenated into one call."""
        if all(c.sequences is not None for c in batch):
            pads = batch[0].sequences.pad_values  # type: ignore[union-attr]
            merged = merge([c.inputs for c in batch], pads) if len(batch) > 1 else batch[0].inputs
            lengths = np.concatenate([c.sequences.lengths for c in batch])  # type: ignore[union-attr]
            return run_grouped(self.encoder.encode, merged, lengths)
        names = list(batch[0].inputs)
        merged = {k: np.concatenate([c.inputs[k] for c in batch]) if len(batch) > 1 else batch[0].inputs[k] for k in names}
        return self.encoder.encode(merged)

    def _observe_start(self, batch: list[_Chunk], started: float) -> None:
        if self._metrics:
            self._metrics.batch_size.labels(self.tower).observe(sum(c.rows for c in batch))
            for chunk in batch:
                self._metrics.queue_wait.labels(self.tower).observe(started - chunk.enqueued)

    def _may_chain(self) -> bool:
        """Whether the model thread may take the next batch itself: not while closing, and not
        while other work (another tower) waits for this executor."""
        if self._closing:
            return False
        pending = getattr(self._executor, "_work_queue", None)
        return pending is None or pending.empty()

    def _chain(self, batch: list[_Chunk], loop: asyncio.AbstractEventLoop, chain: bool) -> tuple[list[_Chunk], Exception] | None:
        """Model calls on the model thread: this batch, then whatever queued up meanwhile, without
        a round trip through the event loop in between. Results go back to the loop as each call
        ends; a failing batch is handed back (with its error) for the loop to isolate."""
        while True:
            started = time.monotonic()
            try:
                out = self._encode_chunks(batch)
                rows = sum(c.rows for c in batch)
                if len(out) != rows:
                    raise RuntimeError(f"{self.tower} tower returned {len(out)} rows for {rows}")
            except Exception as exc:  # a bad batch must not take the worker down
                return batch, exc
            loop.call_soon_threadsafe(self._deliver, batch, out, started, time.monotonic())
            if not chain or not self._may_chain():
                return None
            batch = self._take() or self._linger()
            if not batch:
                return None
            self._observe_start(batch, time.monotonic())

    def _linger(self) -> list[_Chunk]:
        """On the model thread, queue empty: wait up to max_wait for the next rows and take them
        without the event loop. Clients in a closed loop resubmit one by one; starting on the
        first keeps the model busy while the loop answers the rest (else all N come back as one
        batch and the model idles while the loop serves them, every round). Gives the thread
        back at once when another call waits on the executor."""
        deadline = time.monotonic() + self.max_wait
        with self._cond:
            while not self._queue and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._may_chain():
                    return []
                self._cond.wait(min(remaining, 0.001))  # 1 ms slices: re-check the executor's queue
        return self._take()

    def _deliver(self, batch: list[_Chunk], out: np.ndarray, started: float, done: float) -> None:
        """On the loop: each request's rows, and the throughput figures."""
        rows = len(out)
        elapsed = done - started
        self._last_done = done
        self._recent_batch = 0.7 * self._recent_batch + 0.3 * rows
        if elapsed > 0:
            self._rows_per_s = rows / elapsed if self._rows_per_s == 0 else 0.8 * self._rows_per_s + 0.2 * rows / elapsed
        if self._metrics:
            self._metrics.compute.labels(self.tower).observe(elapsed)
            self._metrics.rows.labels(self.tower).inc(rows)
        offset = 0
        for chunk in batch:
            if not chunk.future.done():
                chunk.future.set_result(out[offset : offset + chunk.rows])
            offset += chunk.rows

    async def _run_batch(self, batch: list[_Chunk], chain: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._observe_start(batch, time.monotonic())
        try:
            failed = await loop.run_in_executor(self._executor, self._chain, batch, loop, chain)  # runs after the last _deliver
        except Exception as exc:  # e.g. the executor is gone: fail these requests, keep the worker
            failed = (batch, exc)
        if failed is None:
            return
        bad, exc = failed
        if self._metrics:
            self._metrics.failed_batches.labels(self.tower).inc()
        if len(bad) > 1:
            for chunk in bad:  # isolate the culprit: only its own request fails
                await self._run_batch([chunk], chain=False)
            return
        log.warning("%s model call failed: %s", self.tower, exc)
        if not bad[0].future.done():
            bad[0].future.set_exception(
                OmnivecError(ErrorCode.INFERENCE_FAILED, f"the {self.tower} model failed on this input ({exc.__class__.__name__}: {exc})")
            )
