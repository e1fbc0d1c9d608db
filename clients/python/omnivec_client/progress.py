"""Optional tqdm progress for bulk indexing."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

from .types import AddResult


@contextmanager
def add_progress(total: int | None, description: str, enabled: bool) -> Iterator[Callable[[int, AddResult], None] | None]:
    """A callback that advances a tqdm bar by slice, or None when disabled. The bar shows items done of
    `total`, items/s and the ETA (no ETA when the total is unknown), and indexed/skipped/errors."""
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install 'omnivec-client[progress]'") from None
    with tqdm(total=total, unit=" items", smoothing=0.05, desc=description) as bar:

        def advance(done: int, result: AddResult) -> None:
            bar.update(done)
            bar.set_postfix(indexed=result.indexed, skipped=result.skipped, errors=len(result.errors), refresh=False)

        yield advance
