#!/usr/bin/env python
"""omnivec-mini's training step in the default memory layout vs channels-last, both in one run.

Why: `omnivec bootstrap` trains its towers channels-last (`finetune/bootstrap_train.py`) because
oneDNN's CPU convolutions are faster in that layout; this measures the claim per tower on this
CPU. Each step is what the build's loop does to a tower: forward, a loss, backward, an AdamW step,
on a batch of the build's size (48 pictures of 64 px: one per seen colour-shape class; 64 clips
of 1.5 s). Layouts alternate round by round so a busy neighbour slows both alike.

    .venv/bin/python bench/bench_tower_layout.py --quick      # ~1 min
    .venv/bin/python bench/bench_tower_layout.py --threads 2  # the build's 2 threads

Ends with one JSON line: median ms per step for each tower and layout, and
`<tower>_default_over_channels_last` (above 1: channels-last is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, final_json, set_threads_env  # noqa: E402

CONFIG = ROOT / "model_export" / "configs" / "omnivec-mini.json"


def towers() -> dict[str, tuple[Any, Any]]:
    """Fresh omnivec-mini image and audio towers with an input batch of the build's size each."""
    import torch

    from omnivec.model_export.audio_tower import AudioTower, AudioTowerConfig
    from omnivec.model_export.image_tower import ImageTower, ImageTowerConfig

    cfg = json.loads(CONFIG.read_text())
    image_cfg = ImageTowerConfig(**cfg["image_tower_cfg"], embed_dim=cfg["embed_dim"])
    audio_cfg = AudioTowerConfig(**cfg["audio_cfg"], embed_dim=cfg["embed_dim"])
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    return {
        "image": (ImageTower(image_cfg), torch.randn(48, 3, image_cfg.image_size, image_cfg.image_size, generator=gen)),
        "audio": (AudioTower(audio_cfg), torch.randn(64, audio_cfg.clip_samples, generator=gen) * 3000),  # 16-bit-range speech level
    }


def step_ms(tower: Any, optimizer: Any, x: Any, channels_last: bool) -> float:
    """One training step in the given layout, in milliseconds."""
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    tower.to(memory_format=layout)
    if x.ndim == 4:
        x = x.contiguous(memory_format=layout)
    start = time.perf_counter()
    out = torch.nn.functional.normalize(tower(x), dim=-1)
    loss = (out @ out.T).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 timed steps per tower and layout (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    set_threads_env(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    steps = 8 if args.quick else 30
    figures: dict[str, object] = {"quick": args.quick, "threads": args.threads, "steps": steps, "config": str(CONFIG.relative_to(ROOT))}
    for name, (tower, x) in towers().items():
        optimizer = torch.optim.AdamW(tower.parameters(), lr=1e-3)
        for layout in (False, True, False, True):  # warm-up: oneDNN picks and caches kernels per layout
            step_ms(tower, optimizer, x, layout)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(steps):
            for layout in (False, True):
                times[layout].append(step_ms(tower, optimizer, x, layout))
        default, last = statistics.median(times[False]), statistics.median(times[True])
        figures[f"{name}_ms_default"] = default
        figures[f"{name}_ms_channels_last"] = last
        figures[f"{name}_default_over_channels_last"] = default / last
        print(f"{name}: {default:.0f} ms default, {last:.0f} ms channels-last per step ({default / last:.2f}x)", file=sys.stderr, flush=True)
    final_json(figures)


if __name__ == "__main__":
    main()
