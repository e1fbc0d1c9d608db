"""Variable-length text rows: the length-grouping plan, merging, and the batcher on a real
dynamic-length tower (one long text must not make the short ones pay for its length)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from omnivec.model_export.parity import cosine_rows
from omnivec.server.bundle import ModelBundle
from omnivec.server.inference.batcher import BatchingRunner
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.inference.runner import DirectRunner
from omnivec.server.inference.sequences import CALL_OVERHEAD_TOKENS, Sequences, merge, plan_calls
from omnivec.server.preprocess.text import TextPreprocessor

MIN_COS = 0.99999


def _cost(groups: list[np.ndarray], lengths: np.ndarray) -> int:
    return sum(len(g) * int(lengths[g].max()) + CALL_OVERHEAD_TOKENS for g in groups)


def _brute_force(lengths: np.ndarray) -> int:
    """Cheapest cost over every way to cut the sorted rows into contiguous groups."""
    s = np.sort(lengths)
    n, best = len(s), None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        cost = sum((b - a) * int(s[b - 1]) + CALL_OVERHEAD_TOKENS for a, b in zip(bounds, bounds[1:]))
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_plan_is_optimal_and_covers_every_row_once(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.choice([3, 5, 8, 13, 20, 32, 77], size=int(rng.integers(1, 11)))
    groups = plan_calls(lengths)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    assert _cost(groups, lengths) == _brute_force(lengths)


def test_one_long_text_gets_its_own_call():
    lengths = np.array([8] * 31 + [77])
    groups = plan_calls(lengths)
    assert [len(g) for g in groups] == [31, 1] and groups[1].tolist() == [31]
    assert len(plan_calls(np.array([12, 13, 14, 13]))) == 1, "similar lengths stay one call"


def test_merge_pads_each_input_with_its_value():
    a = {"input_ids": np.array([[5, 6, 7]]), "attention_mask": np.array([[1, 1, 1]])}
    b = {"input_ids": np.array([[8, 9, 0, 0, 0]]), "attention_mask": np.array([[1, 1, 0, 0, 0]])}
    merged = merge([a, b], {"input_ids": 0, "attention_mask": 0})
    assert merged["input_ids"].tolist() == [[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]
    merged = merge([a, b], {"input_ids": 49407, "attention_mask": 0})
    assert merged["input_ids"][0].tolist() == [5, 6, 7, 49407, 49407]


class WidthRecorder:
    """A real encoder that records the (rows, width) of every model call."""

    def __init__(self, inner: OnnxEncoder) -> None:
        self.inner, self.modality, self.input_names, self.dim = inner, inner.modality, inner.input_names, inner.dim
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def encode(self, inputs):
        first = next(iter(inputs.values()))
        with self.lock:
            self.calls.append(first.shape)
        return self.inner.encode(inputs)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(params=["tiny", "mini"])
def text_tower(request, tiny_bundle, mini_text_bundle):
    bundle = ModelBundle.load(tiny_bundle if request.param == "tiny" else mini_text_bundle)
    spec = bundle.manifest.towers["text"]
    pre = TextPreprocessor(bundle.root, spec.preprocess, [i.name for i in spec.inputs], max_chars=10**6, dynamic=True)
    encoder = WidthRecorder(OnnxEncoder(bundle.tower_path("text"), "text", intra_op_threads=1))
    yield bundle, pre, encoder
    encoder.close()


def _alone(pre, encoder, text):
    return encoder.inner.encode(pre([text]).arrays)


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_of_mixed_lengths(text_tower, batching):
    """31 one-text requests of short texts and one long one, at once: every result equals the
    text embedded alone, and no call pads short texts to the long one's width."""
    bundle, pre, encoder = text_tower
    context = bundle.manifest.towers["text"].preprocess.context_length
    words = "red green blue dog cat car tree house river photo".split()
    texts = [" ".join(words[i % 7 : i % 7 + 2 + i % 4]) for i in range(31)] + [" ".join(words * 10)]
    alone = np.concatenate([_alone(pre, encoder, t) for t in texts])
    encoder.calls.clear()

    async def main():
        pool = ThreadPoolExecutor(1)
        runner = BatchingRunner(encoder, pool, max_batch=32, max_wait_ms=0) if batching else DirectRunner(encoder, pool)

        async def one(text):
            b = pre([text])
            return await runner.run(b.arrays, Sequences(np.asarray(b.token_counts), pre.pad_values))

        blocker = asyncio.get_running_loop().run_in_executor(pool, lambda: __import__("time").sleep(0.2))  # let requests queue up
        results = await asyncio.gather(*(one(t) for t in texts))
        await blocker
        await runner.close()
        pool.shutdown()
        return np.concatenate(results)

    got = asyncio.run(main())
    assert cosine_rows(alone, got).min() >= MIN_COS
    if batching:
        widths = {w for _, w in encoder.calls}
        assert context in widths and max(rows for rows, w in encoder.calls if w == context) == 1, encoder.calls
        assert any(rows > 1 for rows, w in encoder.calls if w < 12), f"short texts were batched together: {encoder.calls}"


def test_big_request_is_chunked_by_length_and_returned_in_order(text_tower):
    bundle, pre, encoder = text_tower
    rng = np.random.default_rng(0)
    words = "a the red green blue dog cat car tree house river photo of in on".split()
    texts = [" ".join(rng.choice(words, int(n))) for n in rng.integers(1, 40, 70)]
    batch = pre(texts)
    encoder.calls.clear()

    async def main():
        pool = ThreadPoolExecutor(1)
        runner = BatchingRunner(encoder, pool, max_batch=16, max_wait_ms=0)
        out = await runner.run(batch.arrays, Sequences(np.asarray(batch.token_counts), pre.pad_values))
        await runner.close()
        pool.shutdown()
        return out

    got = asyncio.run(main())
    assert cosine_rows(encoder.inner.encode(batch.arrays), got).min() >= MIN_COS  # same rows, same order
    assert all(rows <= 16 for rows, _ in encoder.calls)
    tokens = sum(rows * width for rows, width in encoder.calls)
    assert tokens < len(texts) * batch.arrays["input_ids"].shape[1] * 0.8, "grouping by length must cut the padded work"
