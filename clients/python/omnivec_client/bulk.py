"""Bulk indexing (`add`): items read lazily in slices, each slice one operation (ask which ids are
stored, send the rest), several slices in flight so the server's model never waits on one request's
upload, parse and answer.

`BulkAdd` holds what the sync and the async client share: cutting slices from any iterable (never
listing it), merging each slice's result by position, progress. The clients only run its slice
operations `concurrency` at a time (threads or tasks). Resuming (skip_existing) makes a slice whose
items were all stored already twice as big as the last, up to RESUME_SLICE, so skipping the done part
of a large job costs a few hundred /items/exists calls, not one per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .calls import Call, Operation, Work
from .errors import OmnivecError
from .media import content_id, encode, read_media
from .types import AddResult, Item, ItemError

DEFAULT_CONCURRENCY = 4  # requests in flight per add: keeps the server's model busy, well under its admission limit
RESUME_SLICE = 8192  # most items per slice while a resume skips stored ones (/items/exists takes 10 000 ids)
EXISTS_MAX = 8192  # ids per /items/exists request


def request_item(item: Item) -> tuple[dict[str, Any], str | None]:
    """The item as the API takes it, and its id when known before sending (given or content hash)."""
    entry: dict[str, Any] = {"payload": dict(item.payload)}
    if item.text is not None:
        entry["text"] = item.text
        known = item.id or content_id("text", item.text)
    elif item.url is not None:
        entry["url"] = item.url
        known = item.id  # the server hashes the downloaded bytes
    else:
        kind = "image" if item.image is not None else "audio"
        data = read_media(item.image if item.image is not None else item.audio)  # type: ignore[arg-type]
        entry[kind] = encode(data)
        known = item.id or content_id(kind, data)
    if item.id is not None:
        entry["id"] = item.id
    return entry, known


def request_items(items: Sequence[Item]) -> list[tuple[dict[str, Any], str | None] | OSError]:
    """A slice's request items in one go (one Work step, one thread hop for the async client); a file
    that cannot be read is its OSError, reported as that item's error."""
    out: list[tuple[dict[str, Any], str | None] | OSError] = []
    for item in items:
        try:
            out.append(request_item(item))
        except OSError as exc:
            out.append(exc)
    return out


@dataclass
class SliceResult:
    """What one slice came to, positions counted from the start of the job."""

    start: int
    count: int
    ids: dict[int, str] = field(default_factory=dict)
    errors: list[ItemError] = field(default_factory=list)
    indexed: int = 0
    skipped: int = 0


Pending = tuple[int, dict[str, Any], "str | None"]  # (position in the job, request item, id known before sending)


def add_slice(url: str, start: int, items: list[Item], sizing: Any, skip_existing: bool) -> Operation[SliceResult]:
    """Index one slice: with skip_existing, ask which known ids are stored and send only the others,
    in requests of the learned size (halved on 413; one item still too big is its own error)."""
    from .operations import _size, chunks, sent_in_parts  # the request sizing all bulk operations share

    result = SliceResult(start, len(items))
    pending: list[Pending] = []
    for offset, built in enumerate((yield Work(request_items, (items,)))):
        if isinstance(built, OSError):
            result.errors.append(ItemError(start + offset, items[offset].id, "unreadable_file", str(built)))
        else:
            pending.append((start + offset, built[0], built[1]))
    known_ids = [known for _, _, known in pending if known]
    if skip_existing and known_ids:
        stored: set[str] = set()
        for i in range(0, len(known_ids), EXISTS_MAX):
            stored.update((yield Call("POST", f"{url}/exists", json={"ids": known_ids[i : i + EXISTS_MAX]}))["existing"])
        for position, _, known in pending:
            if known in stored:
                result.ids[position] = known  # type: ignore[assignment]
                result.skipped += 1
        pending = [p for p in pending if p[2] not in stored]

    def weight(entry: Pending) -> int:
        return _size(entry[1])

    def call(part: list[Pending]) -> Call:
        return Call("POST", url, json={"items": [entry for _, entry, _ in part]})

    for group in chunks(pending, sizing, weight):
        for part, answer in (yield from sent_in_parts(group, call, sizing, weight, keep_failures=True)):
            if isinstance(answer, OmnivecError):  # this one item is over the server's limits on its own
                position = part[0][0]
                result.errors.append(ItemError(position, items[position - start].id, answer.code, answer.message))
                continue
            for (position, _, _), item_id in zip(part, answer["ids"]):
                if item_id is not None:
                    result.ids[position] = item_id
            for error in answer["errors"]:
                position = part[error["index"]][0]
                result.errors.append(ItemError(position, items[position - start].id, error["code"], error["message"]))
            result.indexed += answer["indexed"]
    return result


class BulkAdd:
    """One add job: slices cut lazily from `items`, results merged by position as slices finish (in any order)."""

    def __init__(
        self,
        collection: str,
        items: Iterable[Item],
        *,
        sizing: Any,
        batch_size: int,
        skip_existing: bool,
        on_progress: Callable[[int, AddResult], None] | None,
    ) -> None:
        from .operations import _name

        self.url = f"/v1/collections/{_name(collection)}/items"
        self._items: Iterator[Item] = iter(items)
        self.sizing = sizing
        self.batch_size = batch_size
        self.skip_existing = skip_existing
        self.on_progress = on_progress
        self.result = AddResult()
        self._slice = batch_size
        self._cut = 0

    def next_slice(self) -> Operation[SliceResult] | None:
        """The next slice's operation, or None when every item was handed out."""
        items = list(itertools.islice(self._items, self._slice))
        if not items:
            return None
        start, self._cut = self._cut, self._cut + len(items)
        self.result.ids.extend([None] * len(items))
        return add_slice(self.url, start, items, self.sizing, self.skip_existing)

    def finish(self, done: SliceResult) -> None:
        """Merge a finished slice, report progress, and size the next slice: while whole slices are
        already stored (a resume), twice as many items per slice; at the first one to send, back to batch_size."""
        for position, item_id in done.ids.items():
            self.result.ids[position] = item_id
        self.result.errors += done.errors
        self.result.indexed += done.indexed
        self.result.skipped += done.skipped
        if self.skip_existing and done.count and done.skipped == done.count:
            self._slice = min(max(self._slice, done.count) * 2, max(RESUME_SLICE, self.batch_size))
        else:
            self._slice = self.batch_size
        if self.on_progress is not None:
            self.on_progress(done.count, self.result)

    def outcome(self) -> AddResult:
        self.result.errors.sort(key=lambda e: e.index)
        return self.result


def check_concurrency(concurrency: int) -> int:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer (requests in flight), got {concurrency!r}")
    return concurrency


def known_total(items: Iterable[Item], total: int | None) -> int | None:
    """How many items the progress bar counts to: `total` if given, else len() where the iterable has one."""
    if total is not None:
        return total
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
