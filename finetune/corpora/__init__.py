"""Synthetic corpora generated deterministically from a seed (no downloads)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable


def write_manifest(out: Path, rows: Iterable[dict[str, str]], fields: list[str]) -> Path:
    """`out/manifest.csv` with `fields` as columns, the format `finetune.data.read_manifest` reads."""
    manifest = Path(out) / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
