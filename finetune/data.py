"""Image-caption datasets for fine-tuning: CSV/JSONL manifests and class-folder trees."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str
    label: str | None = None


def read_pairs(source: Path, templates: list[str]) -> list[Pair]:
    """Rows from a manifest (columns image|path, caption|text, optional label) or a class-folder tree."""
    source = Path(source)
    if source.is_dir():
        return _class_folder(source, templates)
    if not source.is_file():
        raise FileNotFoundError(f"training data {source} does not exist")
    rows = _manifest_rows(source)
    pairs = []
    for i, row in enumerate(rows):
        image = row.get("image") or row.get("path") or row.get("file")
        caption = row.get("caption") or row.get("text")
        if not image or caption is None:
            raise ValueError(f"{source} row {i + 1}: needs an image (or path) column and a caption (or text) column")
        path = Path(image)
        pairs.append(Pair(path if path.is_absolute() else source.parent / path, str(caption), row.get("label") or None))
    if not pairs:
        raise ValueError(f"{source} has no rows")
    return pairs


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _class_folder(root: Path, templates: list[str]) -> list[Pair]:
    pairs = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        name = class_dir.name.replace("_", " ")
        for i, image in enumerate(sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)):
            pairs.append(Pair(image, templates[i % len(templates)].format(name), name))
    if not pairs:
        raise ValueError(f"{root} has no class folders with images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return pairs


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * val_fraction))
    return shuffled[n_val:], shuffled[:n_val]


class PairDataset:
    """A torch map-style dataset: (image tensor, token ids) per pair."""

    def __init__(self, pairs: list[Pair], transform: Callable, tokenizer: Callable) -> None:
        self.pairs = pairs
        self.transform = transform
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        from PIL import Image

        pair = self.pairs[index]
        with Image.open(pair.image) as img:
            image = self.transform(img.convert("RGB"))
        return image, self.tokenizer([pair.caption])[0]
