"""Index a demo collection at startup, so a fresh server has something to search.

`omnivec bootstrap` writes `items.jsonl` in the manifest format `omnivec index` reads (one
`{"path": ..., "payload": {...}}` per line, paths relative to it; `server.sources` parses it);
the server embeds those items into the `demo` collection unless it already holds them all. Item
ids are content hashes, so an interrupted run simply completes on the next start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..sources import SourceItem, read_source

from ..errors import ErrorCode, OmnivecError
from ..ids import content_id
from .collections import KEEP_MEDIA_KEY, CollectionService, ItemSpec, run_store
from .inputs import RawInput

log = logging.getLogger("omnivec.demo")

DEMO_COLLECTION = "demo"
BATCH = 32


def _raw_input(item: SourceItem) -> RawInput:
    """A manifest row as the items API's input; files are named by path in messages."""
    if item.path is None:  # a text row
        return RawInput("text", str(item.text), item.label)
    return RawInput(item.modality, item.path.read_bytes(), str(item.path))  # type: ignore[arg-type]


async def index_demo(collections: CollectionService, items_file: Path, name: str = DEMO_COLLECTION) -> int:
    """Create and fill the demo collection if it is missing or incomplete; returns its item count."""
    items = read_source(str(items_file))
    try:
        info = await collections.get(name)
    except OmnivecError as exc:
        if exc.code != ErrorCode.COLLECTION_NOT_FOUND:
            raise
        info = None
    if info is not None and info.space_id != collections.models.default.space_id:
        # The demo belongs to the default model: after a rebuild its old vectors are meaningless.
        log.warning("demo collection %r holds vectors of %s, not %s: rebuilding it", name, info.space_id, collections.models.default.space_id)
        await collections.delete(name)
        info = None
    if info is None:
        await collections.create(name, description=f"demo items from {items_file}", payload_indexes={"label": "keyword", "kind": "keyword"})
    inputs = [_raw_input(item) for item in items]
    ids = [item.id or content_id(raw.kind, raw.value) for item, raw in zip(items, inputs)]
    present = await collections.existing_ids(name, ids) if info is not None else set()
    if present and collections.media is not None and (info.extra or {}).get(KEEP_MEDIA_KEY, True):  # type: ignore[union-attr]
        present &= await run_store(collections.media.store.ids, name)  # a demo indexed before media was kept gets it now
    todo = [k for k, point_id in enumerate(ids) if point_id not in present]
    if not todo:
        log.info("demo collection %r already holds all %d items", name, len(items))
        return len(items)
    log.info("demo collection %r: indexing %d of %d items", name, len(todo), len(items))
    errors = 0
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        specs = [ItemSpec(i, inputs[k], ids[k], items[k].payload) for i, k in enumerate(chunk)]
        result = await collections.add_items(name, specs)
        errors += len(result.errors)
        for error in result.errors:
            log.warning("demo item %s not indexed: %s", inputs[chunk[error.index]].label, error.message)
    count = (await collections.get(name)).count
    log.info("demo collection %r: %d items (%d could not be indexed)", name, count, errors)
    return count
