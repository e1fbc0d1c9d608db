"""The batcher alone under a closed loop: how much of a fake model's batch-32 rate it serves.

N callers (default 32) each send one row, wait for its embedding, then spend `--loop-ms` of
serial work on the event loop (what HTTP parsing and JSON cost per request in the server) before
sending the next. The fake model costs `--call-ms` per call plus `--row-ms` per row (sleeping,
so it overlaps the loop like onnxruntime does). No model, no HTTP: this isolates the batching
policy. Figures, from this run:

  served_over_ideal   rows/s served / the model's own rate at max batch (32 rows per call)
  mean_batch          rows per model call
  model_busy          fraction of the run the fake model spent in calls

    .venv/bin/python bench/bench_batcher_pipeline.py --quick     # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import final_json  # noqa: E402

from omnivec.server.inference.batcher import BatchingRunner  # noqa: E402


class FakeModel:
    """Fixed per-call cost plus per-row cost; records call sizes and busy time."""

    modality = "text"
    input_names = ["x"]
    dim = 1

    def __init__(self, call_s: float, row_s: float) -> None:
        self.call_s, self.row_s = call_s, row_s
        self.sizes: list[int] = []
        self.busy = 0.0
        self.lock = threading.Lock()

    def encode(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(inputs["x"])
        cost = self.call_s + self.row_s * rows
        time.sleep(cost)
        with self.lock:
            self.sizes.append(rows)
            self.busy += cost
        return inputs["x"].astype(np.float32)

    def close(self) -> None:
        pass


async def closed_loop(model: FakeModel, callers: int, loop_s: float, seconds: float, max_wait_ms: float) -> dict:
    with ThreadPoolExecutor(1) as pool:
        runner = BatchingRunner(model, pool, max_batch=32, max_wait_ms=max_wait_ms)
        stop = time.monotonic() + seconds
        done = 0

        async def caller(i: int) -> None:
            nonlocal done
            await asyncio.sleep(i * loop_s)
            while time.monotonic() < stop:
                await runner.run({"x": np.array([[float(i)]], np.float32)})
                done += 1
                time.sleep(loop_s)  # serial per-request work on the event loop

        start = time.monotonic()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        elapsed = time.monotonic() - start
        await runner.close()
    ideal = 32 / (model.call_s + 32 * model.row_s)
    return {
        "served_over_ideal": done / elapsed / ideal,
        "mean_batch": statistics.mean(model.sizes[5:]),
        "model_busy": model.busy / elapsed,
        "rows_s": done / elapsed,
        "ideal_rows_s": ideal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s run")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--call-ms", type=float, default=3.0, help="fake model cost per call (MiniLM on 1 thread: ~2.6)")
    parser.add_argument("--row-ms", type=float, default=3.0, help="fake model cost per row (MiniLM, 13 tokens: ~3.1)")
    parser.add_argument("--loop-ms", type=float, default=1.0, help="serial event-loop work per request (served omnivec: ~1)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0
    model = FakeModel(args.call_ms / 1000, args.row_ms / 1000)
    out = asyncio.run(closed_loop(model, args.callers, args.loop_ms / 1000, seconds, args.max_wait_ms))
    print(
        f"{args.callers} closed-loop callers, {args.loop_ms} ms loop work each; fake model {args.call_ms} ms/call + "
        f"{args.row_ms} ms/row: {out['rows_s']:.0f} rows/s of {out['ideal_rows_s']:.0f} at batch 32, "
        f"mean batch {out['mean_batch']:.1f}, model busy {out['model_busy']:.2f}"
    )
    final_json({"callers": args.callers, **out})


if __name__ == "__main__":
    main()
