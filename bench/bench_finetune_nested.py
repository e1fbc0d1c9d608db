#!/usr/bin/env python
"""Nested (Matryoshka) dimensions: recall@1 and zero-shot accuracy per embedding prefix, with and
without `--nested-dims`, after the same number of steps in one run.

Same corpus, model and settings as bench_finetune_mined.py (shapes, 8 colours x 3 shapes, label
positives; omnivec-tiny, 64-d, random init; validation drawn with another seed), random batches. Both runs are evaluated at every prefix (the first d
coordinates, renormalised, as a server truncating vectors would score them).

    .venv/bin/python bench/bench_finetune_nested.py --quick     # ~2-4 min on 2 busy cores

Ends with one JSON line: recall1_d{d}_nested, recall1_d{d}_plain, ... and the d=8 ratio nested/plain.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import final_json  # noqa: E402
from bench_finetune_mined import corpora, mean_recall, train  # noqa: E402

DIMS = [8, 16, 32]


def evaluate_prefixes(out: Path, val_csv: Path) -> dict:
    """Evaluate a run's checkpoint at every prefix (also for the run trained without nesting)."""
    from omnivec.finetune.data import PairDataset, image_loader, read_pairs
    from omnivec.finetune.evaluate import evaluate
    from omnivec.model_export.loader import load_model
    from open_clip.transform import PreprocessCfg, image_transform_v2

    loaded = load_model("omnivec-tiny", str(out / "checkpoints" / "last.pt"))
    transform = image_transform_v2(PreprocessCfg(**loaded.preprocess_cfg), is_train=False)
    dataset = PairDataset(read_pairs(val_csv, ["a {}"]), image_loader(transform), loaded.tokenizer)
    return evaluate(loaded.model, dataset, ["a {}"], loaded.tokenizer, nested_dims=DIMS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="150 steps on 4 images per class")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--per-combo", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    steps, per_combo = (150, 4) if args.quick else (args.steps, args.per_combo)
    figures: dict = {"steps": steps, "batch": args.batch, "dims": DIMS + [64]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_csv, val_csv = corpora(root, per_combo)
        for kind, nested in (("plain", None), ("nested", ",".join(map(str, DIMS)))):
            train(train_csv, val_csv, root / kind, steps, args.batch, nested_dims=nested)
            metrics = evaluate_prefixes(root / kind, val_csv)
            for d in DIMS:
                figures[f"recall1_d{d}_{kind}"] = mean_recall(metrics, 1, f"d{d}/")
                figures[f"zero_shot_d{d}_{kind}"] = metrics[f"d{d}/zero_shot_top1"]
            figures[f"recall1_d64_{kind}"] = mean_recall(metrics, 1)
            figures[f"zero_shot_d64_{kind}"] = metrics["zero_shot_top1"]
            print(kind, {k: round(v, 3) for k, v in figures.items() if k.endswith(kind)}, file=sys.stderr)
    figures["recall1_d8_nested_over_plain"] = figures["recall1_d8_nested"] / max(figures["recall1_d8_plain"], 1e-9)
    final_json(figures)


if __name__ == "__main__":
    main()
