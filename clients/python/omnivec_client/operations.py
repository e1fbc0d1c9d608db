"""Every API operation once, as a generator of Calls (see calls.py) shared by Client and AsyncClient.

Bulk operations split their inputs into requests of bounded size and count, and halve a request
the server answers with 413 (body or input count over its limits), so callers never have to know
the server's limits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generator
from urllib.parse import quote

from .bulk import BulkAdd
from .calls import Call, Operation, Sleep, Work
from .errors import OmnivecError
from .media import MediaSource, encode, read_media
from .types import AddResult, Classification, Collection, Embeddings, Hit, Item, LabelSet, StoredItem

SPLITTABLE = ("payload_too_large", "too_many_inputs")  # 413s that a smaller request avoids


def _name(name: str) -> str:
    return quote(name, safe="")


def _size(entry: dict[str, Any]) -> int:
    return sum(len(v) for k, v in entry.items() if k in ("text", "image", "audio") and isinstance(v, str))


@dataclass
class Sizing:
    """How big one request may be. Starts from the client's settings and shrinks for the rest of
    the operation when the server answers 413, so later requests fit the first time."""

    max_count: int
    max_bytes: int

    def learn(self, exc: OmnivecError, count: int, nbytes: int) -> None:
        if exc.code == "too_many_inputs":
            self.max_count = max(1, min(self.max_count, count // 2))
        else:
            self.max_bytes = max(1, min(self.max_bytes, nbytes // 2))


def chunks(entries: Sequence[Any], sizing: Sizing, size: Callable[[Any], int]) -> Iterator[list[Any]]:
    """Consecutive groups of at most max_count entries and about max_bytes of content (one entry
    may exceed it), read from `sizing` as each group is made."""
    group: list[Any] = []
    total = 0
    for entry in entries:
        weight = size(entry)
        if group and (len(group) >= sizing.max_count or total + weight > sizing.max_bytes):
            yield group
            group, total = [], 0
        group.append(entry)
        total += weight
    if group:
        yield group


def sent_in_parts(
    entries: list[Any], make_call: Callable[[list[Any]], Call], sizing: Sizing, size: Callable[[Any], int], *, keep_failures: bool = False
) -> Generator[Call, Any, list[tuple[list[Any], Any]]]:
    """Send entries in one call; when the server says it is too big, learn a smaller size (half)
    and send the entries in parts of that size, recursively.

    Returns (entries, answer) per request sent. A single entry still too big raises, or with
    keep_failures comes back as (entries, the OmnivecError), so the caller can report that item
    and go on with the others.
    """
    try:
        answer = yield make_call(entries)
        return [(entries, answer)]
    except OmnivecError as exc:
        if exc.code not in SPLITTABLE:
            raise
        if len(entries) < 2:
            if keep_failures:
                return [(entries, exc)]
            raise
        sizing.learn(exc, len(entries), sum(size(e) for e in entries))
    sent: list[tuple[list[Any], Any]] = []
    for group in chunks(entries, sizing, size):  # lazily: a limit learned inside one group sizes the next
        if len(group) == len(entries):  # the learned limits do not split it (weightless entries): halve
            group = entries[: len(entries) // 2]
            sent += yield from sent_in_parts(group, make_call, sizing, size, keep_failures=keep_failures)
            group = entries[len(entries) // 2 :]
        sent += yield from sent_in_parts(group, make_call, sizing, size, keep_failures=keep_failures)
    return sent


def _listed(values: Any) -> list[Any]:
    """One text, path or bytes value, or an iterable of them, as a list (a str is never split into characters)."""
    if isinstance(values, (str, bytes, bytearray, memoryview, os.PathLike)):
        return [values]
    return list(values)


def _media_inputs(texts: Iterable[str], images: Iterable[MediaSource], audios: Iterable[MediaSource]) -> list[dict[str, str]]:
    inputs: list[dict[str, str]] = [{"text": t} for t in _listed(texts)]
    inputs += [{"image": encode(read_media(i))} for i in _listed(images)]
    inputs += [{"audio": encode(read_media(a))} for a in _listed(audios)]
    return inputs


# -- system ------------------------------------------------------------------------------------


def health() -> Operation[bool]:
    yield Call("GET", "/healthz", retry=False, timeout_s=5.0)
    return True


def wait_ready(timeout_s: float, interval_s: float) -> Operation[dict[str, Any]]:
    """Poll /readyz until the model is loaded (and any demo collection indexed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return (yield Call("GET", "/readyz", retry=False))
        except OmnivecError as exc:
            if exc.status not in (0, 503) or time.monotonic() + interval_s > deadline:
                raise OmnivecError(
                    f"the server was not ready within {timeout_s:g} s (last answer: {exc.message}); "
                    "a first start that builds the default model takes minutes, wait longer or see the server log",
                    code="not_ready",
                    status=exc.status,
                ) from exc
        yield Sleep(interval_s)


def models() -> Operation[list[dict[str, Any]]]:
    return (yield Call("GET", "/v1/models"))["data"]


def _until(poll: Callable[[], Call], finished: Callable[[dict[str, Any]], bool], what: str, timeout_s: float, interval_s: float,
           on_progress: Callable[[dict[str, Any]], None] | None) -> Operation[dict[str, Any]]:  # fmt: skip
    """Poll a status until `finished`, reporting each answer; OmnivecError(code="timeout") after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = yield poll()
        if on_progress is not None:
            on_progress(status)
        if finished(status):
            return status
        if time.monotonic() + interval_s > deadline:
            raise OmnivecError(f"{what} did not finish within {timeout_s:g} s (last status: {status}); wait longer or check the server log", code="timeout", status=0)
        yield Sleep(interval_s)


def load_model(bundle: str, name: str | None, *, wait: bool, timeout_s: float, interval_s: float,
               on_progress: Callable[[dict[str, Any]], None] | None = None) -> Operation[dict[str, Any]]:  # fmt: skip
    """POST /v1/models, then (wait) poll the model until ready; a failed load raises with the server's reason."""
    body = {"bundle": str(bundle), **({"name": name} if name else {})}
    info = yield Call("POST", "/v1/models", json=body, resend=False)
    if not wait:
        return info
    path = f"/v1/models/{_name(info['name'])}"
    info = yield from _until(lambda: Call("GET", path), lambda s: s["state"] != "loading", f"loading {info['name']!r}", timeout_s, interval_s, on_progress)
    if info["state"] != "ready":
        raise OmnivecError(f"loading {info['name']!r} failed: {info.get('error')}", code="model_load_failed", status=0)
    return info


def unload_model(name: str) -> Operation[dict[str, Any]]:
    return (yield Call("DELETE", f"/v1/models/{_name(name)}", resend=False))


def reembed(collection: str, model: str, *, wait: bool, timeout_s: float, interval_s: float,
            on_progress: Callable[[dict[str, Any]], None] | None = None) -> Operation[dict[str, Any]]:  # fmt: skip
    """POST .../reembed, then (wait) poll its progress until done or failed (a failed job raises)."""
    path = f"/v1/collections/{_name(collection)}/reembed"
    status = yield Call("POST", path, json={"model": model}, resend=False)
    if not wait:
        return status
    status = yield from _until(lambda: Call("GET", path), lambda s: s["state"] != "running", f"re-embedding {collection!r}", timeout_s, interval_s, on_progress)
    if status["state"] == "failed":
        raise OmnivecError(f"re-embedding {collection!r} failed: {status.get('message')}", code="reembed_failed", status=0)
    return status


# -- embeddings and classification -------------------------------------------------------------


def embed(
    texts: Iterable[str],
    images: Iterable[MediaSource],
    audios: Iterable[MediaSource],
    *,
    truncate: bool,
    audio_windows: bool,
    batch_size: int,
    max_request_bytes: int,
    model: str | None = None,
) -> Operation[Embeddings]:
    inputs = yield Work(_media_inputs, (texts, images, audios))
    if not inputs:
        raise ValueError("nothing to embed: give texts, images and/or audios")
    answers: list[Any] = []
    sizing = Sizing(batch_size, max_request_bytes)

    def call(part: list[dict[str, str]]) -> Call:
        body = {"inputs": part, "encoding": "base64", "truncate": truncate, "audio_windows": audio_windows}
        return Call("POST", "/v1/embed", json={**body, "model": model} if model else body)  # sent only when set: older servers refuse it

    for group in chunks(inputs, sizing, _size):
        parts = yield from sent_in_parts(group, call, sizing, _size)
        answers += [answer for _, answer in parts]
    return Embeddings.from_responses(answers)


def classify(
    texts: Iterable[str],
    images: Iterable[MediaSource],
    audios: Iterable[MediaSource],
    *,
    labels: Sequence[str] | None,
    labelset: str | None,
    templates: Sequence[str] | None,
    top_k: int,
    multi_label: bool,
    batch_size: int,
    max_request_bytes: int,
    model: str | None = None,
) -> Operation[list[Classification]]:
    if (labels is None) == (labelset is None):
        raise ValueError("give labels=[...] or labelset='name'")
    inputs = yield Work(_media_inputs, (texts, images, audios))
    if not inputs:
        raise ValueError("nothing to classify: give texts, images and/or audios")
    options: dict[str, Any] = {"top_k": top_k, "multi_label": multi_label, **({"model": model} if model else {})}
    if labels is not None:
        options["labels"] = list(labels)
    else:
        options["labelset"] = labelset
    if templates is not None:
        options["templates"] = list(templates)
    results: list[Classification] = []
    sizing = Sizing(batch_size, max_request_bytes)
    for group in chunks(inputs, sizing, _size):
        parts = yield from sent_in_parts(group, lambda part: Call("POST", "/v1/classify", json={**options, "inputs": part}), sizing, _size)
        results += [Classification.from_json(row) for _, answer in parts for row in answer["results"]]
    return results


# -- collections ------------------------------------------------------------------------------


def create_collection(
    name: str,
    *,
    description: str,
    payload_indexes: dict[str, str] | None,
    exist_ok: bool,
    keep_media: bool = True,
    vectors: dict[str, Any] | None = None,
    model: str | None = None,
) -> Operation[Collection]:
    body: dict[str, Any] = {"name": name, "description": description, **(vectors or {})}
    if model is not None:  # sent only when named: one-model servers from before refuse unknown fields
        body["model"] = model
    if payload_indexes:
        body["payload_indexes"] = payload_indexes
    if not keep_media:  # sent only when off: servers from before kept media refuse unknown fields
        body["keep_media"] = False
    try:
        return Collection.from_json((yield Call("POST", "/v1/collections", json=body, resend=False)))
    except OmnivecError as exc:
        if not (exist_ok and exc.code == "collection_exists"):
            raise
    return (yield from get_collection(name))


def get_collection(name: str) -> Operation[Collection]:
    return Collection.from_json((yield Call("GET", f"/v1/collections/{_name(name)}")))


def list_collections() -> Operation[list[Collection]]:
    return [Collection.from_json(row) for row in (yield Call("GET", "/v1/collections"))["data"]]


def delete_collection(name: str) -> Operation[None]:
    yield Call("DELETE", f"/v1/collections/{_name(name)}", resend=False)


def optimize(name: str) -> Operation[dict[str, Any]]:
    return (yield Call("POST", f"/v1/collections/{_name(name)}/optimize"))


# -- items ------------------------------------------------------------------------------------


def add(
    collection: str,
    items: Iterable[Item],
    *,
    batch_size: int,
    max_request_bytes: int,
    skip_existing: bool,
    on_progress: Callable[[int, AddResult], None] | None,
) -> Operation[AddResult]:
    """Index items one slice after the other (the clients run several at once: bulk.BulkAdd); with
    skip_existing, items the collection already holds are not sent."""
    job = BulkAdd(collection, items, sizing=Sizing(batch_size, max_request_bytes), batch_size=batch_size, skip_existing=skip_existing, on_progress=on_progress)
    while (operation := job.next_slice()) is not None:
        job.finish((yield from operation))
    return job.outcome()


def delete_items(collection: str, *, ids: Sequence[str] | None, filter: dict[str, Any] | None) -> Operation[int]:
    if ids is None and filter is None:
        raise ValueError("give ids=[...] and/or filter={...} (to delete everything, delete the collection)")
    body: dict[str, Any] = {}
    if ids is not None:
        body["ids"] = list(ids)
    if filter is not None:
        body["filter"] = filter
    return (yield Call("POST", f"/v1/collections/{_name(collection)}/items/delete", json=body))["deleted"]


def get_item(collection: str, item_id: str, *, with_vector: bool) -> Operation[StoredItem]:
    if item_id in (".", ".."):
        raise ValueError(f"an item id of {item_id!r} cannot be addressed in a URL path; search(..., id=...) still finds items like it")
    path = f"/v1/collections/{_name(collection)}/items/{quote(item_id, safe='')}"
    return StoredItem.from_json((yield Call("GET", path, params={"with_vector": str(with_vector).lower()})))


def scroll_page(
    collection: str, *, limit: int, cursor: str | None, filter: dict[str, Any] | None, modality: str | None, with_vectors: bool
) -> Operation[tuple[list[StoredItem], str | None]]:
    body = {"limit": limit, "cursor": cursor, "filter": filter, "modality": modality, "with_vectors": with_vectors}
    answer = yield Call("POST", f"/v1/collections/{_name(collection)}/items/scroll", json={k: v for k, v in body.items() if v is not None})
    return [StoredItem.from_json(row) for row in answer["items"]], answer["next_cursor"]


def existing_ids(collection: str, ids: Sequence[str]) -> Operation[list[str]]:
    return (yield Call("POST", f"/v1/collections/{_name(collection)}/items/exists", json={"ids": list(ids)}))["existing"]


# -- search -----------------------------------------------------------------------------------


def search(collection: str, query: dict[str, Any], options: dict[str, Any]) -> Operation[list[Hit]]:
    given = {k: v for k, v in query.items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"search needs exactly one query: text, image, audio, url, id or vector (got {sorted(given) or 'none'})")
    (kind, value), = given.items()
    if kind in ("image", "audio"):
        value = yield Work(lambda source: encode(read_media(source)), (value,))
    elif kind == "vector":
        value = [float(x) for x in value]
    body = {"query": {kind: value}, **{k: v for k, v in options.items() if v is not None}}
    return [Hit.from_json(row) for row in (yield Call("POST", f"/v1/collections/{_name(collection)}/search", json=body))["results"]]


# -- label sets -------------------------------------------------------------------------------


def put_labelset(name: str, labels: Sequence[str], *, templates: Sequence[str] | None, description: str) -> Operation[LabelSet]:
    body = {"labels": list(labels), "templates": list(templates) if templates is not None else None, "description": description}
    return LabelSet.from_json((yield Call("PUT", f"/v1/labelsets/{_name(name)}", json=body)))


def get_labelset(name: str) -> Operation[LabelSet]:
    return LabelSet.from_json((yield Call("GET", f"/v1/labelsets/{_name(name)}")))


def list_labelsets() -> Operation[list[LabelSet]]:
    return [LabelSet.from_json(row) for row in (yield Call("GET", "/v1/labelsets"))["data"]]


def delete_labelset(name: str) -> Operation[None]:
    yield Call("DELETE", f"/v1/labelsets/{_name(name)}", resend=False)
