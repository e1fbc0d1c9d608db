"""The synchronous client: `with Client() as omni: omni.search("photos", "a red bicycle")`."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import httpx

from . import operations as ops
from .bulk import DEFAULT_CONCURRENCY, BulkAdd, check_concurrency, known_total
from .calls import Call, Operation, Sleep, T, Work, settle
from .media import MediaSource
from .retry import NO_RETRY, RetryPolicy
from .settings import ClientSettings
from .progress import add_progress
from .types import AddResult, Classification, Collection, Embeddings, Hit, Item, LabelSet, StoredItem


class Client:
    """Blocking client for one omnivec server. Thread-safe (one httpx connection pool).

    Every method raises OmnivecError with the server's code and message on failure; 429 and 503
    answers and failed connections are retried per `retry` (honouring Retry-After).
    Pass `http_client` to reuse your own httpx.Client (its base_url must point at the server).
    `api_key` (default $OMNIVEC_API_KEY) is sent as `Authorization: Bearer` on every request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        batch_size: int = 64,
        max_request_bytes: int = 8 * 1024 * 1024,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.settings = ClientSettings.from_arguments(base_url, timeout_s, retry, batch_size, max_request_bytes, headers, api_key, concurrency)
        self._headers = self.settings.request_headers
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(base_url=self.settings.base_url, timeout=timeout_s)

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        policy = self.settings.retry if call.retry else NO_RETRY
        for attempt in itertools.count(1):
            try:
                outcome = self._http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=self._headers, timeout=call.timeout_s or self.settings.timeout_s
                )
            except httpx.TransportError as exc:
                outcome = exc
            result = settle(policy, attempt, call, outcome, self.settings.base_url)
            if not isinstance(result, Sleep):
                return result
            time.sleep(result.seconds)

    def _run(self, operation: Operation[T]) -> T:
        """Drive an operation: send its calls, sleep its sleeps, do its work, throw errors back into it."""
        try:
            step = next(operation)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = operation.send(None)
                    continue
                try:
                    answer = step.fn(*step.args) if isinstance(step, Work) else self._send(step)
                except Exception as exc:  # noqa: BLE001 - the operation decides (e.g. split on 413), else it re-raises
                    step = operation.throw(exc)
                    continue
                step = operation.send(answer)
        except StopIteration as done:
            return done.value

    # -- system -----------------------------------------------------------------------------

    def health(self) -> bool:
        """True when the server process answers (it may still be loading; see wait_ready)."""
        return self._run(ops.health())

    def wait_ready(self, timeout_s: float = 600.0, interval_s: float = 1.0) -> dict[str, Any]:
        """Block until /readyz says ready (model loaded, demo collection indexed); its body."""
        return self._run(ops.wait_ready(timeout_s, interval_s))

    def models(self) -> list[dict[str, Any]]:
        """The served model: name, space id, dim, modalities, scoring, towers, parity report."""
        return self._run(ops.models())

    def load_model(
        self, bundle: str, name: str | None = None, *, wait: bool = True, timeout_s: float = 600.0, interval_s: float = 0.5,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Load a bundle (a directory on the server) next to the served models; with `wait`, return once it serves
        (`on_progress` gets each status: state, progress). Needs an admin key when the server has API keys."""
        return self._run(ops.load_model(bundle, name, wait=wait, timeout_s=timeout_s, interval_s=interval_s, on_progress=on_progress))

    def unload_model(self, name: str) -> dict[str, Any]:
        """Unload a model once the requests using it finished (409 for the default model or one a re-embed uses)."""
        return self._run(ops.unload_model(name))

    def reembed(
        self, collection: str, model: str, *, wait: bool = True, timeout_s: float = 3600.0, interval_s: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Move a collection into `model`'s space (rebuilt from its kept media, then swapped in under its name); with
        `wait`, return the final status ({state, done, total, errors, ...}); `on_progress` gets each status."""
        return self._run(ops.reembed(collection, model, wait=wait, timeout_s=timeout_s, interval_s=interval_s, on_progress=on_progress))

    # -- embeddings and classification ------------------------------------------------------

    def embed(
        self, texts: Iterable[str] = (), images: Iterable[MediaSource] = (), audios: Iterable[MediaSource] = (), *, truncate: bool = True, audio_windows: bool = False,
        model: str | None = None,
    ) -> Embeddings:
        """Unit vectors for texts, image files and audio files (paths or bytes), in that order.

        Any number of inputs: they are sent in requests of batch_size. Over-long texts are cut to
        the model's context and flagged in `truncated` (truncate=False: an error instead). An audio
        input's vector pools its windows; audio_windows=True also returns each window (`windows`).
        """
        s = self.settings
        return self._run(ops.embed(texts, images, audios, truncate=truncate, audio_windows=audio_windows, batch_size=s.batch_size, max_request_bytes=s.max_request_bytes, model=model))

    def classify(
        self,
        texts: Iterable[str] = (),
        images: Iterable[MediaSource] = (),
        audios: Iterable[MediaSource] = (),
        *,
        labels: Sequence[str] | None = None,
        labelset: str | None = None,
        templates: Sequence[str] | None = None,
        top_k: int = 5,
        multi_label: bool = False,
        model: str | None = None,
    ) -> list[Classification]:
        """Zero-shot labels for each input (texts, then images, then audios), best first."""
        s = self.settings
        return self._run(
            ops.classify(
                texts, images, audios, labels=labels, labelset=labelset, templates=templates, top_k=top_k,
                multi_label=multi_label, batch_size=s.batch_size, max_request_bytes=s.max_request_bytes, model=model,
            )
        )

    # -- collections ------------------------------------------------------------------------

    def create_collection(
        self, name: str, *, description: str = "", payload_indexes: dict[str, str] | None = None, exist_ok: bool = False, keep_media: bool = True,
        vectors: dict[str, Any] | None = None, model: str | None = None,
    ) -> Collection:
        """A collection in the served model's space; exist_ok returns an existing one instead of failing.
        keep_media=False: the server keeps no previews or originals of its items (nothing to show on the search page).
        vectors: the collection's vector options, e.g. {"quantization": "int8", "dimensions": 256, "on_disk": True,
        "hnsw": {"m": 16}} (see the README's "Vector options"); omitted, the server's defaults.
        model: a loaded model's name (GET /v1/models) whose space the collection is in; omitted, the default model."""
        return self._run(ops.create_collection(name, description=description, payload_indexes=payload_indexes, exist_ok=exist_ok, keep_media=keep_media, vectors=vectors, model=model))

    def get_collection(self, name: str) -> Collection:
        return self._run(ops.get_collection(name))

    def list_collections(self) -> list[Collection]:
        return self._run(ops.list_collections())

    def delete_collection(self, name: str) -> None:
        self._run(ops.delete_collection(name))

    def optimize(self, name: str) -> dict[str, Any]:
        """Start a background ANN index build (searches keep working meanwhile)."""
        return self._run(ops.optimize(name))

    # -- items ------------------------------------------------------------------------------

    def add(
        self, collection: str, items: Iterable[Item], *, skip_existing: bool = False, progress: bool = False,
        concurrency: int | None = None, total: int | None = None,
    ) -> AddResult:
        """Index items in batches; items the server refuses (or a file that cannot be read, or one
        item over the server's size limits) are listed in `errors` and the rest are indexed.

        Indexing the same content again replaces the item (its payload too). To resume an
        interrupted job instead, pass skip_existing=True: items whose id the collection already
        holds are not sent at all (so their payloads are not updated either).

        `items` may be any iterable, a generator too: it is read a slice at a time, never listed.
        Up to `concurrency` requests (default: the client's, 4) are in flight at once, so the server's
        model keeps working while a request travels; results stay by position. `total` sizes the
        progress bar (items/s, ETA) when `items` has no len().
        """
        s = self.settings
        in_flight = check_concurrency(concurrency if concurrency is not None else s.concurrency)
        with add_progress(known_total(items, total), f"index {collection}", progress) as on_progress:
            job = BulkAdd(
                collection, items, sizing=ops.Sizing(s.batch_size, s.max_request_bytes), batch_size=s.batch_size,
                skip_existing=skip_existing, on_progress=on_progress,
            )
            return self._run_bulk(job, in_flight)

    def _run_bulk(self, job: BulkAdd, concurrency: int) -> AddResult:
        """Run a job's slices `concurrency` at a time in worker threads (one at a time here when 1)."""
        if concurrency == 1:
            while (operation := job.next_slice()) is not None:
                job.finish(self._run(operation))
            return job.outcome()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="omnivec-add") as pool:
            running: set[Future] = set()
            try:
                while True:
                    while len(running) < concurrency and (operation := job.next_slice()) is not None:
                        running.add(pool.submit(self._run, operation))
                    if not running:
                        return job.outcome()
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        job.finish(future.result())
            except BaseException:
                for future in running:  # slices not started are dropped; started ones end their current request
                    future.cancel()
                raise

    def delete(self, collection: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | None = None) -> int:
        """Delete items by id and/or a Qdrant-style filter; how many were deleted."""
        return self._run(ops.delete_items(collection, ids=ids, filter=filter))

    def get(self, collection: str, item_id: str, *, with_vector: bool = False) -> StoredItem:
        return self._run(ops.get_item(collection, item_id, with_vector=with_vector))

    def iter_items(
        self, collection: str, *, filter: dict[str, Any] | None = None, modality: str | None = None, with_vectors: bool = False, page_size: int = 256
    ) -> Iterator[StoredItem]:
        """Every item of a collection (matching the filter), fetched page by page: for exports,
        backups and re-embedding with a new model."""
        cursor: str | None = None
        while True:
            page, cursor = self._run(ops.scroll_page(collection, limit=page_size, cursor=cursor, filter=filter, modality=modality, with_vectors=with_vectors))
            yield from page
            if cursor is None:
                return

    def exists(self, collection: str, ids: Sequence[str]) -> list[str]:
        """Which of these ids the collection holds."""
        return self._run(ops.existing_ids(collection, ids))

    # -- search -----------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        text: str | None = None,
        *,
        image: MediaSource | None = None,
        audio: MediaSource | None = None,
        url: str | None = None,
        id: str | None = None,
        vector: Sequence[float] | None = None,
        top_k: int = 10,
        offset: int = 0,
        filter: dict[str, Any] | None = None,
        modality: str | None = None,
        score_threshold: float | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """The items nearest one query (a text, an image or audio file, a URL, a stored item's id
        or a vector), best first; `modality` and `filter` narrow what comes back."""
        query = {"text": text, "image": image, "audio": audio, "url": url, "id": id, "vector": vector}
        options = {"top_k": top_k, "offset": offset, "filter": filter, "modality": modality, "score_threshold": score_threshold, "with_payload": with_payload}
        return self._run(ops.search(collection, query, options))

    # -- label sets -------------------------------------------------------------------------

    def put_labelset(self, name: str, labels: Sequence[str], *, templates: Sequence[str] | None = None, description: str = "") -> LabelSet:
        """Create or replace a named label set, then classify with labelset=name."""
        return self._run(ops.put_labelset(name, labels, templates=templates, description=description))

    def get_labelset(self, name: str) -> LabelSet:
        return self._run(ops.get_labelset(name))

    def list_labelsets(self) -> list[LabelSet]:
        return self._run(ops.list_labelsets())

    def delete_labelset(self, name: str) -> None:
        self._run(ops.delete_labelset(name))
