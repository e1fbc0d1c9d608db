#!/usr/bin/env python
"""Two model bundles scored on the same held-out pictures and recordings, through the serving path.

Why: a change to omnivec-mini (a tower's shape, its training, an augmentation) is judged by
scoring the old and the new bundle on one set that neither build reported on: the second,
independently written generators (`finetune/corpora/heldout_style.py`, `heldout_audio.py`) drawn
with a seed of their own. Both bundles see the very same files, so the comparison is paired: the
figures that count are how many items only one of the two gets right, not two builds' reports
side by side. Media go through the server's own decoding, windowing and onnxruntime sessions
(`EmbeddingService`), and labels go through the classify endpoint's own prompt ensembling
(`ZeroShotClassifier.label_vectors`) with the build's prompts.

    .venv/bin/python bench/bench_bundle_quality.py --baseline OLD --candidate NEW           # 384 pictures, 258 clips
    .venv/bin/python bench/bench_bundle_quality.py --baseline OLD --candidate NEW --quick   # 128 and 86, ~1 min
    # a seed-0 build's own report set (seed 0 + 2000, 4 and 4): reproduces its image_style_top1 and speech_conditions_top1
    .venv/bin/python bench/bench_bundle_quality.py --baseline OLD --candidate NEW --seed 2000 --pictures-per-class 4 --clips-per-word 4

OLD and NEW are bundle directories (`manifest.json` + ONNX towers) or `omnivec bootstrap` output
directories (their `bundle/` is used). Needs omnivec[export] (the generators) and espeak-ng. Ends
with one JSON line: for each figure the baseline's and the candidate's top-1, the ratio
`*_candidate_over_baseline`, the paired counts `*_only_candidate_right` / `*_only_baseline_right`,
and top-1 per background, layout, stroke and recording condition.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import final_json  # noqa: E402

if TYPE_CHECKING:
    from omnivec.server.services.embedding import EmbeddingService

FULL = {"per_class": 6, "per_word": 6}
QUICK = {"per_class": 2, "per_word": 2}


def bundle_dir(path: Path) -> Path:
    """A bundle directory, or the `bundle/` inside an `omnivec bootstrap` output directory."""
    for candidate in (path, path / "bundle"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise SystemExit(f"{path}: no manifest.json here or in {path / 'bundle'}; give a bundle directory or an `omnivec bootstrap --out` directory")


# a held-out set: (modality, records with "path" and "label", the class labels)
HeldOut = tuple[str, list[dict], list[str]]


def templates(prompts: tuple[str, ...], field: str) -> list[str]:
    """The build's prompts ("a {color} {shape}") as zero-shot templates ("a {}") over the class label."""
    out = [p.replace(field, "{}") for p in prompts]
    if any(t.count("{}") != 1 or "{" in t.replace("{}", "") for t in out):
        raise SystemExit(f"prompts {prompts} no longer fill one {field}; update bench_bundle_quality.templates")
    return out


def held_out_sets(root: Path, seed: int, build_seed: int, per_class: int, per_word: int) -> dict[str, HeldOut]:
    """Render the sets once, so both bundles see the very same files."""
    from tqdm import tqdm

    from omnivec.finetune.bootstrap_data import training_voices
    from omnivec.finetune.corpora import heldout_audio, heldout_style
    from omnivec.finetune.corpora.shapes import COLORS, SHAPES
    from omnivec.finetune.corpora.speech import WORDS

    shapes = [f"{c} {s}" for c in COLORS for s in SHAPES]
    words = sorted(WORDS)
    steps: list[tuple[str, str, Callable[[Path], list[dict]], list[str]]] = [
        ("style", "image", lambda d: heldout_style.render_style_set(d, seed, per_class=per_class), shapes),
        ("plain_white", "image", lambda d: heldout_style.render_plain_white_set(d, seed, per_class=1), shapes),
        (
            "conditions", "audio",
            lambda d: [{**r, "label": r["word"]} for r in heldout_audio.render_audio_conditions(d, seed, exclude_voices=list(training_voices(build_seed)), per_word=per_word)],
            words,
        ),
    ]
    sets = {}
    for name, modality, render, classes in tqdm(steps, desc="rendering held-out sets", unit="set", file=sys.stderr):
        folder = root / name
        records = render(folder)
        sets[name] = (modality, [{**r, "path": str(folder / r["path"])} for r in records], classes)
    return sets


def media_vectors(service: EmbeddingService, modality: str, paths: list[str], batch: int = 64) -> np.ndarray:
    """One unit vector per file, embedded as the server embeds an upload (audio windowed and pooled)."""
    from tqdm import tqdm

    out = []
    for i in tqdm(range(0, len(paths), batch), desc=f"{service.name} {modality}", unit="batch", file=sys.stderr, leave=False):
        data = [Path(p).read_bytes() for p in paths[i : i + batch]]
        if modality == "image":
            out.append(asyncio.run(service.embed_images(data)))
        else:
            out.append(asyncio.run(service.embed_audios(data)).vectors)
    return np.concatenate(out)


def score(bundle: Path, sets: dict[str, HeldOut], threads: int) -> dict[str, list[bool]]:
    """Whether each held-out item's top-1 label is right, per set."""
    from omnivec.finetune.bootstrap_eval import SHAPE_PROMPTS, SPEECH_PROMPTS
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.services.embedding import EmbeddingService
    from omnivec.server.services.zero_shot import ZeroShotClassifier
    from omnivec.server.settings import Settings

    prompts = {"image": templates(SHAPE_PROMPTS, "{color} {shape}"), "audio": templates(SPEECH_PROMPTS, "{w}")}

    settings = Settings(model={"precision": "fp32", "intra_op_threads": threads}, batching={"enabled": False}, server={"preprocess_threads": threads, "inference_threads": 1})
    service = EmbeddingService(ModelBundle.load(bundle), settings)
    zero_shot = ZeroShotClassifier(service)  # the mean of unit prompt vectors, renormalised, as the build evaluates
    try:
        right = {}
        for name, (modality, records, classes) in sets.items():
            labels = asyncio.run(zero_shot.label_vectors(classes, prompts[modality]))
            predicted = (media_vectors(service, modality, [r["path"] for r in records]) @ labels.T).argmax(axis=1)
            right[name] = [classes[p] == r["label"] for p, r in zip(predicted, records)]
        return right
    finally:
        asyncio.run(service.close())


def groups_of(name: str, record: dict) -> list[str]:
    """The groups the build's report uses: style parts ("bg=black", "layout=cropped", ...) or the condition ("telephone")."""
    from omnivec.finetune.bootstrap_eval import _condition_group, _style_groups

    return _condition_group(record) if name == "conditions" else _style_groups(record)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def main() -> None:
    """Render once, score both bundles, print the paired figures and the final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the bundle to compare against (or an `omnivec bootstrap --out` directory)")
    parser.add_argument("--candidate", type=Path, required=True, help="the bundle under test (or an `omnivec bootstrap --out` directory)")
    parser.add_argument("--quick", action="store_true", help=f"smaller sets: {QUICK['per_class']} pictures per class, {QUICK['per_word']} clips per word (default {FULL['per_class']} and {FULL['per_word']})")
    parser.add_argument("--seed", type=int, default=9999, help="seed of the held-out generators (default 9999; a build's own report uses its seed + 2000)")
    parser.add_argument("--build-seed", type=int, default=0, help="the builds' seed: its training voices are kept out of the recordings (default 0)")
    parser.add_argument("--pictures-per-class", type=positive, help="varied pictures per colour-shape class (overrides --quick)")
    parser.add_argument("--clips-per-word", type=positive, help="recordings per word (overrides --quick)")
    parser.add_argument("--threads", type=positive, default=1, help="onnxruntime and decoding threads (default 1)")
    args = parser.parse_args()
    bundles = {"baseline": bundle_dir(args.baseline), "candidate": bundle_dir(args.candidate)}
    sizes = dict(QUICK if args.quick else FULL)
    if args.pictures_per_class is not None:
        sizes["per_class"] = args.pictures_per_class
    if args.clips_per_word is not None:
        sizes["per_word"] = args.clips_per_word
    for name in [k for k in os.environ if k.startswith("OMNIVEC_")]:  # a server's settings (backend, providers) must not change what is measured
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="omnivec-bench-quality-") as tmp:
        sets = held_out_sets(Path(tmp), args.seed, args.build_seed, **sizes)
        right = {who: score(path, sets, args.threads) for who, path in bundles.items()}

    figures: dict[str, object] = {"quick": args.quick, "seed": args.seed, "build_seed": args.build_seed, **sizes, **{who: str(path) for who, path in bundles.items()}}
    for name, (_, records, _) in sets.items():
        base, cand = right["baseline"][name], right["candidate"][name]
        figures[f"{name}_items"] = len(records)
        figures[f"{name}_top1_baseline"] = round(sum(base) / len(base), 4)
        figures[f"{name}_top1_candidate"] = round(sum(cand) / len(cand), 4)
        figures[f"{name}_top1_candidate_over_baseline"] = round(sum(cand) / sum(base), 4) if sum(base) else None
        figures[f"{name}_only_candidate_right"] = sum(c and not b for b, c in zip(base, cand))
        figures[f"{name}_only_baseline_right"] = sum(b and not c for b, c in zip(base, cand))
        groups: dict[str, list[tuple[bool, bool]]] = {}
        for record, b, c in zip(records, base, cand):
            for group in groups_of(name, record):
                groups.setdefault(group, []).append((b, c))
        figures[f"{name}_by_group"] = {
            g: {"baseline": round(sum(b for b, _ in v) / len(v), 3), "candidate": round(sum(c for _, c in v) / len(v), 3), "items": len(v)} for g, v in sorted(groups.items())
        }
    for name in sets:
        print(
            f"{name:12s} {figures[f'{name}_items']:4d} items: baseline {figures[f'{name}_top1_baseline']:.3f}, candidate {figures[f'{name}_top1_candidate']:.3f} "
            f"(only candidate right {figures[f'{name}_only_candidate_right']}, only baseline right {figures[f'{name}_only_baseline_right']})",
            file=sys.stderr,
        )
    final_json(figures)


if __name__ == "__main__":
    main()
