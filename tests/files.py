"""Small file helpers shared by the corpus tests."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path


def csv_rows(manifest: Path) -> list[dict[str, str]]:
    with Path(manifest).open(newline="") as f:
        return list(csv.DictReader(f))


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path: equal dicts mean byte-identical trees."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}
