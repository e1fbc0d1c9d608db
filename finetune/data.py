"""(media, caption) datasets for fine-tuning: CSV/JSONL manifests and class-folder trees.

Media are image or audio files; a manifest names them in an `image`, `audio`, `path` or `file`
column next to `caption` (or `text`) and an optional `label`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omnivec.server.media import SUFFIXES as MEDIA_SUFFIXES
from omnivec.server.sources import manifest_rows

SUFFIXES = {modality: set(suffixes) for modality, suffixes in MEDIA_SUFFIXES.items()}  # the server's own lists


@dataclass(frozen=True)
class Pair:
    media: Path
    caption: str
    label: str | None = None


def read_pairs(source: Path, templates: list[str], modality: str = "image") -> list[Pair]:
    """Rows from a manifest (columns image|audio|path, caption|text, optional label) or a class-folder tree."""
    source = Path(source)
    if source.is_dir():
        return _class_folder(source, templates, SUFFIXES[modality])
    if not source.is_file():
        raise FileNotFoundError(f"training data {source} does not exist")
    rows = read_manifest(source)
    pairs = []
    for i, row in enumerate(rows):
        media = row.get(modality) or row.get("path") or row.get("file")
        caption = row.get("caption") or row.get("text")
        if not media or caption is None:
            raise ValueError(f"{source} row {i + 1}: needs an {modality} (or path) column and a caption (or text) column")
        path = Path(media)
        pairs.append(Pair(path if path.is_absolute() else source.parent / path, str(caption), row.get("label") or None))
    if not pairs:
        raise ValueError(f"{source} has no rows")
    return pairs


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV or JSONL manifest, as dicts (read by the same reader as `omnivec index`)."""
    return [row for _, row in manifest_rows(Path(path))]


def _class_folder(root: Path, templates: list[str], suffixes: set[str]) -> list[Pair]:
    pairs = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        name = class_dir.name.replace("_", " ")
        for i, media in enumerate(sorted(p for p in class_dir.iterdir() if p.suffix.lower() in suffixes)):
            pairs.append(Pair(media, templates[i % len(templates)].format(name), name))
    if not pairs:
        raise ValueError(f"{root} has no class folders with files of types {', '.join(sorted(suffixes))}")
    return pairs


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * val_fraction))
    return shuffled[n_val:], shuffled[:n_val]


class PairDataset:
    """A torch map-style dataset: (media tensor, token ids) per pair; `load` turns a path into a tensor."""

    def __init__(self, pairs: list[Pair], load: Callable[[Path], Any], tokenizer: Callable) -> None:
        self.pairs = pairs
        self.load = load
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        pair = self.pairs[index]
        return self.load(pair.media), self.tokenizer([pair.caption])[0]


def image_loader(transform: Callable) -> Callable[[Path], Any]:
    def load(path: Path) -> Any:
        from PIL import Image

        with Image.open(path) as img:
            return transform(img.convert("RGB"))

    return load


def audio_loader(spec: Any, *, random_crop: bool, seed: int = 0) -> Callable[[Path], Any]:
    """Decode and resample exactly as the server does; one clip per item (a random window when
    training with augmentation, else the first), zero-padded like the server pads short audio."""
    rng = random.Random(seed)

    def load(path: Path) -> Any:
        import torch

        from omnivec.server.preprocess.audio import decode_audio, resample, split_windows

        samples, rate = decode_audio(Path(path).read_bytes(), max_seconds=spec.max_seconds, label=str(path))
        windows = split_windows(resample(samples, rate, spec.sample_rate), spec).windows
        return torch.from_numpy(windows[rng.randrange(len(windows)) if random_crop else 0].copy())

    return load


def positive_groups(pairs: list[Pair], positives: str) -> list[int]:
    """One integer per pair; pairs with equal integers are each other's positives in the loss.

    ``caption``: identical captions (after whitespace/case folding) share a group, so two
    pictures of "a red circle" in one batch are not pushed apart; ``label``: the manifest's
    label (or class folder); ``pair``: every pair alone (the classic one-positive-per-row loss).
    """
    if positives == "pair":
        return list(range(len(pairs)))
    if positives == "label":
        missing = sum(1 for p in pairs if not p.label)
        if missing:
            raise ValueError(f"--positives label needs a label on every row; {missing} of {len(pairs)} have none (add a label column, or use --positives caption)")
        keys = [str(p.label) for p in pairs]
    elif positives == "caption":
        keys = [" ".join(p.caption.lower().split()) for p in pairs]
    else:
        raise ValueError(f"positives must be caption, label or pair, got {positives!r}")
    ids: dict[str, int] = {}
    return [ids.setdefault(k, len(ids)) for k in keys]


class IndexedDataset:
    """Wraps a dataset so each item also carries its index (to look up its positive group)."""

    def __init__(self, dataset: PairDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        media, tokens = self.dataset[index]
        return media, tokens, index
