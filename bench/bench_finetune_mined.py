#!/usr/bin/env python
"""Hard-negative (mined) batches vs random batches: validation recall@1 after the same number of steps.

Corpus: the shapes corpus, 8 colours x 3 shapes (24 classes; --shapes 8 for 64), captions from 4
templates, `--positives label` (pictures of one class are positives whatever the template). With
batch 8 a random batch holds about 8 different classes, rarely two that share a colour *and* are
close in form, so random batches are easy. The validation set is drawn with another seed. Model: omnivec-tiny (2-layer ViT + 2-layer text transformer,
64-d), random init, trained twice from the same seed with the same settings except `--batches`.
The mined run rebuilds its nearest-neighbour graph every epoch from the current model, and its
cost (embedding the training set, the graph, the batches) is reported as a share of training time.

    .venv/bin/python bench/bench_finetune_mined.py --quick     # ~2-4 min on 2 busy cores
    .venv/bin/python bench/bench_finetune_mined.py --steps 600

Ends with one JSON line: recall1_random, recall1_mined, recall1_mined_over_random, mining_cost_share, ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import final_json  # noqa: E402


def corpora(root: Path, per_combo: int, n_shapes: int = 3) -> tuple[Path, Path]:
    """A training corpus and an independently drawn validation corpus (another seed)."""
    from omnivec.finetune.corpora.shapes import SHAPES, generate

    shapes = list(SHAPES[:n_shapes])
    return generate(root / "train", per_combo=per_combo, seed=0, shapes=shapes), generate(root / "val", per_combo=2, seed=1, shapes=shapes)


def mean_recall(metrics: dict, k: int, prefix: str = "") -> float:
    return (metrics[f"{prefix}image_to_text_r@{k}"] + metrics[f"{prefix}text_to_image_r@{k}"]) / 2


def train(train_csv: Path, val_csv: Path, out: Path, steps: int, batch: int, **choices) -> tuple[dict, float, dict]:
    import torch

    from omnivec.finetune.config import FinetuneConfig
    from omnivec.finetune.train import finetune

    torch.set_num_threads(1)
    n_train = sum(1 for _ in train_csv.open()) - 1
    epochs = -(-steps // (n_train // batch))
    config = FinetuneConfig(
        model="omnivec-tiny", train_data=train_csv, val_data=val_csv, out=out, epochs=epochs, max_steps=steps, batch_size=batch,
        lr=2e-3, warmup_steps=10, weight_decay=0.0, templates=["a {}"], threads=1, export=False, positives="label", **choices,
    )
    started = time.perf_counter()
    result = finetune(config, progress=False, log=lambda _m: None)
    report = json.loads((out / "report.json").read_text())
    return result.history[-1]["metrics"], time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="150 steps on 4 images per class")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--per-combo", type=int, default=8, help="training images per colour-shape class")
    parser.add_argument("--shapes", type=int, default=3, help="shapes (of 8) in the corpus; classes = 8 colours x shapes")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    steps, per_combo = (150, 4) if args.quick else (args.steps, args.per_combo)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_csv, val_csv = corpora(root, per_combo, args.shapes)
        figures: dict = {"steps": steps, "batch": args.batch, "train_pairs": 8 * args.shapes * per_combo}
        for kind in ("random", "mined"):
            metrics, seconds, report = train(train_csv, val_csv, root / kind, steps, args.batch, batches=kind)
            figures[f"recall1_{kind}"] = mean_recall(metrics, 1)
            figures[f"recall5_{kind}"] = mean_recall(metrics, 5)
            figures[f"zero_shot_{kind}"] = metrics.get("zero_shot_top1", float("nan"))
            figures[f"seconds_{kind}"] = seconds
            if kind == "mined":
                mining = report["mining"]
                spent = sum(m["embed_s"] + m["graph_s"] + m["batches_s"] for m in mining)
                figures["mining_seconds"] = spent
                figures["mining_cost_share"] = spent / max(sum(m["train_s"] for m in mining), 1e-9)
                figures["hardness_mined"] = sum(m["hardness_mined"] for m in mining) / len(mining)
                figures["hardness_random"] = sum(m["hardness_random"] for m in mining) / len(mining)
            print(f"{kind}: recall@1 {figures[f'recall1_{kind}']:.3f}, recall@5 {figures[f'recall5_{kind}']:.3f} in {seconds:.0f}s", file=sys.stderr)
    figures["recall1_mined_over_random"] = figures["recall1_mined"] / max(figures["recall1_random"], 1e-9)
    final_json(figures)


if __name__ == "__main__":
    main()
