"""A file helper shared by the corpus tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path: equal dicts mean byte-identical trees."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}
