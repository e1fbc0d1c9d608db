#!/usr/bin/env python
"""The default model, omnivec-mini, built by `omnivec bootstrap`: quality and time.

Runs `omnivec.finetune.bootstrap.bootstrap()` (synthetic corpora, image and audio towers trained
against the locked all-MiniLM-L6-v2 text tower, evaluation, export) into a temp directory. The
build evaluates its *untrained* towers on the same evaluation data before training: that is the
baseline. The ratios say how much
of each figure training earned, and `heldout_over_seen` compares colour-shape pairs never seen in
training with seen ones (generalisation vs memory; 1.0 means no gap).

    .venv/bin/python bench/bench_bootstrap.py --quick   # 300 steps per tower, small corpora, ~2 min
    .venv/bin/python bench/bench_bootstrap.py           # the default build (`omnivec bootstrap`), ~10 min on 2 quiet cores

Needs omnivec[export] and espeak-ng. Ends with one JSON line: the bootstrap metrics, the
untrained baseline (`untrained_*`), `*_over_untrained`, `heldout_over_seen`, chance levels and
stage timings, and `cpu_seconds_build` (CPU time of the build and its espeak-ng children: what it
costs when the cores are shared). The held-out style figures (`image_style_top1`,
`image_plain_white_top1`, `speech_conditions_top1`) come from a second, independently written
generator (`finetune/corpora/heldout_style.py`, `heldout_audio.py`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import final_json, set_threads_env  # noqa: E402

# --quick: fewer steps and smaller training corpora; evaluation sets keep their default size.
QUICK = {"image_steps": 300, "audio_steps": 300, "per_combo": 10, "per_word_picture": 10, "per_word_speech": 8, "per_sound": 8, "style_per_class": 1, "conditions_per_word": 1}
HEADLINE = (
    "image_heldout_combo_top1", "image_style_top1", "image_plain_white_top1", "speech_heldout_voice_top1", "speech_conditions_top1",
    "sound_top1", "paraphrase_top5", "text_to_image_r@5", "text_to_audio_r@5", "audio_to_image_r@5", "audio_to_image_auc",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"reduced build: {', '.join(f'{k}={v}' for k, v in QUICK.items())}")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--out", type=Path, help="build here and keep it (default: a temp directory, removed); an existing build with the same settings is reused")
    args = parser.parse_args()
    if args.threads:
        set_threads_env(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from omnivec.finetune.bootstrap import BootstrapConfig, bootstrap, cpu_seconds

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="omnivec-bench-bootstrap-"))
    config = BootstrapConfig(out=out, seed=args.seed, threads=args.threads, **(QUICK if args.quick else {}))
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load_at_start = round(os.getloadavg()[0], 2)  # other work on the cores slows every stage several-fold
    try:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        result = bootstrap(config, progress=True)
        build_s, cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
        base = result.untrained  # the build evaluates its towers before training too
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    m = result.metrics
    figures: dict = {"quick": args.quick, "threads": torch.get_num_threads(), "cached": result.cached, "load_avg_1m_at_start": load_at_start}
    figures.update({k: v for k, v in asdict(config).items() if k not in ("out", "threads")})
    figures.update(m)
    figures.update({f"untrained_{k}": v for k, v in base.items() if not k.endswith("_classes")})
    for k in HEADLINE:  # a build cached by an older version may lack the newer metrics
        if k in m and k in base:
            figures[f"{k}_over_untrained"] = float(m[k] / base[k]) if base[k] > 0 else None
    figures["heldout_over_seen"] = float(m["image_heldout_combo_top1"] / m["image_seen_combo_top1"]) if m["image_seen_combo_top1"] else None
    figures["chance_image_top1"] = 1.0 / m["image_classes"]
    figures["chance_speech_top1"] = 1.0 / m["speech_classes"]
    figures.update({f"seconds_{k}": v for k, v in result.timings.items()})
    figures["seconds_build"] = build_s
    figures["cpu_seconds_build"] = cpu_s  # this process and its children (espeak-ng): what the build costs on a shared machine

    print(f"\n{'metric':42} {'trained':>8} {'untrained':>9}")
    for k, v in m.items():
        if not k.endswith("_classes"):
            print(f"{k:42} {v:8.3f} {base[k]:9.3f}")
    print(f"heldout_over_seen {figures['heldout_over_seen']}; build {build_s:.0f} s wall, {cpu_s:.0f} s CPU ({', '.join(f'{k} {v}' for k, v in result.timings.items())})")
    final_json(figures)


if __name__ == "__main__":
    main()
