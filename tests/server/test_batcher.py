"""BatchingRunner mechanism, with a recording encoder (one mechanism, so a fake is fine here)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from omnivec.server.errors import ErrorCode, OmnivecError
from omnivec.server.inference.batcher import BatchingRunner
from omnivec.server.metrics import Metrics


class RecordingEncoder:
    """Embedding of row x = [x, 2x, 3x, 4x]; sleeps per call; fails on a poison value."""

    modality = "text"
    input_names = ["x"]
    dim = 4

    def __init__(self, delay: float = 0.0, poison: float | None = None) -> None:
        self.delay = delay
        self.poison = poison
        self.calls: list[list[float]] = []
        self.lock = threading.Lock()

    def encode(self, inputs):
        x = inputs["x"][:, 0]
        with self.lock:
            self.calls.append(x.tolist())
        time.sleep(self.delay)
        if self.poison is not None and np.any(x == self.poison):
            raise ValueError("poisoned row")
        return np.stack([x, 2 * x, 3 * x, 4 * x], axis=1).astype(np.float32)

    def close(self) -> None:
        pass


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32)[:, None]}


def expected(*values: float) -> np.ndarray:
    x = np.array(values, dtype=np.float32)
    return np.stack([x, 2 * x, 3 * x, 4 * x], axis=1)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2) as executor:
        yield executor


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_merged_and_each_gets_its_rows(pool):
    encoder = RecordingEncoder(delay=0.05)
    runner = BatchingRunner(encoder, pool, max_batch=16, max_wait_ms=0, metrics=Metrics())

    async def main():
        results = await asyncio.gather(*(runner.run(rows(float(i), float(i) + 0.5)) for i in range(20)))
        await runner.close()
        return results

    results = run(main())
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, expected(float(i), float(i) + 0.5))
    assert max(len(c) for c in encoder.calls) > 2, f"no batching happened: {encoder.calls}"
    assert all(len(c) <= 16 for c in encoder.calls)
    assert sum(len(c) for c in encoder.calls) == 40


def test_lone_request_does_not_wait(pool):
    encoder = RecordingEncoder()
    runner = BatchingRunner(encoder, pool, max_batch=32, max_wait_ms=3000)

    async def main():
        start = time.monotonic()
        await runner.run(rows(1.0))
        first = time.monotonic() - start
        await runner.close()
        return first

    assert run(main()) < 1.5, "an idle model must not hold a lone request for max_wait (3 s here)"


def test_oversized_request_is_split_and_reassembled(pool):
    encoder = RecordingEncoder()
    runner = BatchingRunner(encoder, pool, max_batch=8, max_queue=1000)
    values = [float(v) for v in range(50)]

    async def main():
        out = await runner.run(rows(*values))
        await runner.close()
        return out

    np.testing.assert_array_equal(run(main()), expected(*values))
    assert all(len(c) <= 8 for c in encoder.calls) and len(encoder.calls) >= 7


def test_full_queue_is_429_with_retry_after_and_recovers(pool):
    encoder = RecordingEncoder(delay=0.2)
    metrics = Metrics()
    runner = BatchingRunner(encoder, pool, max_batch=2, max_queue=4, metrics=metrics)

    async def main():
        tasks = [asyncio.ensure_future(runner.run(rows(float(i)))) for i in range(12)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        after = await runner.run(rows(99.0))
        await runner.close()
        return outcomes, after

    outcomes, after = run(main())
    rejected = [o for o in outcomes if isinstance(o, OmnivecError)]
    assert rejected and all(e.code == ErrorCode.OVERLOADED and int(e.headers["Retry-After"]) >= 1 for e in rejected)
    assert any(isinstance(o, np.ndarray) for o in outcomes)
    np.testing.assert_array_equal(after, expected(99.0))
    assert metrics.rejected.labels("text")._value.get() == len(rejected)


def test_request_larger_than_queue_is_413(pool):
    runner = BatchingRunner(RecordingEncoder(), pool, max_batch=2, max_queue=4)
    with pytest.raises(OmnivecError) as info:
        run(runner.run(rows(*[float(i) for i in range(5)])))
    assert info.value.code == ErrorCode.TOO_MANY_INPUTS


def test_failing_input_fails_only_its_request(pool):
    encoder = RecordingEncoder(delay=0.05, poison=13.0)
    runner = BatchingRunner(encoder, pool, max_batch=32, max_wait_ms=0)

    async def main():
        outcomes = await asyncio.gather(*(runner.run(rows(float(i))) for i in range(20)), return_exceptions=True)
        again = await runner.run(rows(1.0))  # the worker survived
        await runner.close()
        return outcomes, again

    outcomes, again = run(main())
    for i, o in enumerate(outcomes):
        if i == 13:
            assert isinstance(o, OmnivecError) and o.code == ErrorCode.INFERENCE_FAILED and "poisoned" in o.message
        else:
            np.testing.assert_array_equal(o, expected(float(i)))
    np.testing.assert_array_equal(again, expected(1.0))


def test_cancelled_requests_never_reach_the_model(pool):
    encoder = RecordingEncoder(delay=0.3)
    metrics = Metrics()
    runner = BatchingRunner(encoder, pool, max_batch=4, metrics=metrics)

    async def main():
        busy = asyncio.ensure_future(runner.run(rows(1.0)))
        await asyncio.sleep(0.05)  # the model is now busy with row 1
        doomed = asyncio.ensure_future(runner.run(rows(666.0)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await busy
        await runner.run(rows(2.0))
        await runner.close()

    run(main())
    assert not any(666.0 in call for call in encoder.calls), encoder.calls
    assert metrics.cancelled.labels("text")._value.get() == 1


def test_close_drains_queued_work_then_refuses(pool):
    encoder = RecordingEncoder(delay=0.05)
    runner = BatchingRunner(encoder, pool, max_batch=2)

    async def main():
        tasks = [asyncio.ensure_future(runner.run(rows(float(i)))) for i in range(6)]
        await asyncio.sleep(0.01)
        await runner.close()
        results = await asyncio.gather(*tasks)
        with pytest.raises(OmnivecError) as info:
            await runner.run(rows(1.0))
        return results, info.value

    results, refused = run(main())
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, expected(float(i)))
    assert refused.code == ErrorCode.NOT_READY


class GatedEncoder(RecordingEncoder):
    """The first call waits for `go`; records when each call started (monotonic)."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay=delay)
        self.go = threading.Event()
        self.started: list[float] = []

    def encode(self, inputs):
        self.started.append(time.monotonic())
        if len(self.started) == 1:
            assert self.go.wait(10)
        return super().encode(inputs)


def test_model_thread_takes_the_next_batch_while_the_event_loop_is_busy(pool):
    """Rows queued during a model call are taken by the model thread as soon as the call ends,
    not after a round trip through the event loop: under load the loop is busy with HTTP work,
    and every millisecond the model waits for it is lost throughput (issue 12: at 32 connections
    the model sat idle 15-20% of the time between calls)."""
    encoder = GatedEncoder(delay=0.02)
    runner = BatchingRunner(encoder, pool, max_batch=8, max_wait_ms=5.0)

    async def main():
        first = asyncio.ensure_future(runner.run(rows(1.0)))
        while not encoder.started:  # call 1 is running (held at the gate)
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(runner.run(rows(float(v)))) for v in (2.0, 3.0, 4.0)]
        await asyncio.sleep(0)  # let them enqueue
        assert runner.queued_rows == 3
        encoder.go.set()
        time.sleep(0.3)  # the event loop is busy (here: blocked) while the model finishes call 1
        loop_free = time.monotonic()
        results = await asyncio.gather(first, *queued)
        await runner.close()
        return loop_free, results

    loop_free, results = run(main())
    for v, out in zip((1.0, 2.0, 3.0, 4.0), results):
        np.testing.assert_array_equal(out, expected(v))
    assert encoder.calls == [[1.0], [2.0, 3.0, 4.0]]
    assert encoder.started[1] < loop_free, "the second call waited for the event loop"


def test_chained_calls_leave_room_for_other_work_on_the_executor():
    """With one model thread shared by two towers, a tower under constant load must not keep the
    thread to itself: the model thread hands back as soon as another tower's call is waiting."""
    with ThreadPoolExecutor(1) as shared:
        text, image = RecordingEncoder(delay=0.01), RecordingEncoder(delay=0.01)
        image.modality = "image"
        text_runner = BatchingRunner(text, shared, max_batch=1, max_wait_ms=0)
        image_runner = BatchingRunner(image, shared, max_batch=1, max_wait_ms=0)

        async def main():
            texts = [asyncio.ensure_future(text_runner.run(rows(float(i)))) for i in range(30)]
            await asyncio.sleep(0.015)  # the text tower is busy and has 29 rows queued
            before = len(text.calls)
            await image_runner.run(rows(7.0))
            after = len(text.calls)
            await asyncio.gather(*texts)
            await text_runner.close()
            await image_runner.close()
            return before, after

        before, after = run(main())
    assert after - before <= 2, f"the image call waited for {after - before} text calls"


def test_model_thread_lingers_for_the_next_request(pool):
    """After a call that emptied the queue, the model thread waits (up to max_wait) for the next
    row and starts on it itself. Closed-loop clients come back one by one while the event loop
    answers the others; if the next call could only start from the loop, all N would come back as
    one batch each round and the model would idle while the loop serves them."""
    encoder = GatedEncoder(delay=0.0)
    runner = BatchingRunner(encoder, pool, max_batch=8, max_wait_ms=2000)

    async def main():
        first = asyncio.ensure_future(runner.run(rows(1.0)))
        while not encoder.started:
            await asyncio.sleep(0.001)
        encoder.go.set()
        await first
        await asyncio.sleep(0.05)  # everything settled: queue empty, model thread lingering
        second = asyncio.ensure_future(runner.run(rows(2.0)))
        await asyncio.sleep(0)  # it is queued
        time.sleep(0.3)  # the event loop is busy (here: blocked) answering other requests
        loop_free = time.monotonic()
        out = await second
        await runner.close()
        return loop_free, out

    loop_free, out = run(main())
    np.testing.assert_array_equal(out, expected(2.0))
    assert encoder.calls == [[1.0], [2.0]]
    assert encoder.started[1] < loop_free, "the second call waited for the event loop"


def test_executor_gone_fails_the_requests_not_the_worker():
    """A model call that cannot even be scheduled fails its requests with inference_failed."""
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    runner = BatchingRunner(RecordingEncoder(), executor, max_batch=4, max_wait_ms=0)

    async def main():
        calls = asyncio.gather(*(runner.run(rows(float(i))) for i in range(3)), return_exceptions=True)
        outcomes = await asyncio.wait_for(calls, 30)  # a dead worker would leave them hanging
        await runner.close()
        return outcomes

    outcomes = run(main())
    assert all(isinstance(o, OmnivecError) and o.code == ErrorCode.INFERENCE_FAILED for o in outcomes), outcomes
