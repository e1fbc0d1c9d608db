"""The asyncio client: the same methods as Client, awaited. Operations are shared (operations.py);
only sending and waiting differ."""

from __future__ import annotations

import itertools
import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import httpx

from . import operations as ops
from .bulk import DEFAULT_CONCURRENCY, BulkAdd, check_concurrency, known_total
from .calls import Call, Operation, Sleep, T, Work, settle
from .media import MediaSource
from .progress import add_progress
from .retry import NO_RETRY, RetryPolicy
from .settings import ClientSettings
from .types import AddResult, Classification, Collection, Embeddings, Hit, Item, LabelSet, StoredItem


class AsyncClient:
    """Non-blocking client for one omnivec server; see Client for what each method does.

    Files are read and encoded in a worker thread, so the event loop keeps serving other calls. Run
    many calls at once with asyncio.gather: the server batches concurrent requests into one model call.
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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = ClientSettings.from_arguments(base_url, timeout_s, retry, batch_size, max_request_bytes, headers, api_key, concurrency)
        self._headers = self.settings.request_headers
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(base_url=self.settings.base_url, timeout=timeout_s)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        policy = self.settings.retry if call.retry else NO_RETRY
        for attempt in itertools.count(1):
            try:
                outcome = await self._http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=self._headers, timeout=call.timeout_s or self.settings.timeout_s
                )
            except httpx.TransportError as exc:
                outcome = exc
            result = settle(policy, attempt, call, outcome, self.settings.base_url)
            if not isinstance(result, Sleep):
                return result
            await asyncio.sleep(result.seconds)

    async def _run(self, operation: Operation[T]) -> T:
        try:
            step = next(operation)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = operation.send(None)
                    continue
                try:
                    answer = await asyncio.to_thread(step.fn, *step.args) if isinstance(step, Work) else await self._send(step)
                except Exception as exc:  # noqa: BLE001 - the operation decides, else it re-raises
                    step = operation.throw(exc)
                    continue
                step = operation.send(answer)
        except StopIteration as done:
            return done.value

    async def health(self) -> bool:
        return await self._run(ops.health())

    async def wait_ready(self, timeout_s: float = 600.0, interval_s: float = 1.0) -> dict[str, Any]:
        return await self._run(ops.wait_ready(timeout_s, interval_s))

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(ops.models())

    async def load_model(
        self, bundle: str, name: str | None = None, *, wait: bool = True, timeout_s: float = 600.0, interval_s: float = 0.5,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Load a bundle (a directory on the server) next to the served models; with `wait`, return once it serves
        (`on_progress` gets each status: state, progress). Needs an admin key when the server has API keys."""
        return await self._run(ops.load_model(bundle, name, wait=wait, timeout_s=timeout_s, interval_s=interval_s, on_progress=on_progress))

    async def unload_model(self, name: str) -> dict[str, Any]:
        """Unload a model once the requests using it finished (409 for the default model or one a re-embed uses)."""
        return await self._run(ops.unload_model(name))

    async def reembed(
        self, collection: str, model: str, *, wait: bool = True, timeout_s: float = 3600.0, interval_s: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Move a collection into `model`'s space (rebuilt from its kept media, then swapped in under its name); with
        `wait`, return the final status ({state, done, total, errors, ...}); `on_progress` gets each status."""
        return await self._run(ops.reembed(collection, model, wait=wait, timeout_s=timeout_s, interval_s=interval_s, on_progress=on_progress))

    async def embed(
        self, texts: Iterable[str] = (), images: Iterable[MediaSource] = (), audios: Iterable[MediaSource] = (), *, truncate: bool = True, audio_windows: bool = False,
        model: str | None = None,
    ) -> Embeddings:
        s = self.settings
        return await self._run(ops.embed(texts, images, audios, truncate=truncate, audio_windows=audio_windows, batch_size=s.batch_size, max_request_bytes=s.max_request_bytes, model=model))

    async def classify(
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
        s = self.settings
        return await self._run(
            ops.classify(
                texts, images, audios, labels=labels, labelset=labelset, templates=templates, top_k=top_k,
                multi_label=multi_label, batch_size=s.batch_size, max_request_bytes=s.max_request_bytes, model=model,
            )
        )

    async def create_collection(
        self, name: str, *, description: str = "", payload_indexes: dict[str, str] | None = None, exist_ok: bool = False, keep_media: bool = True,
        vectors: dict[str, Any] | None = None, model: str | None = None,
    ) -> Collection:
        return await self._run(ops.create_collection(name, description=description, payload_indexes=payload_indexes, exist_ok=exist_ok, keep_media=keep_media, vectors=vectors, model=model))

    async def get_collection(self, name: str) -> Collection:
        return await self._run(ops.get_collection(name))

    async def list_collections(self) -> list[Collection]:
        return await self._run(ops.list_collections())

    async def delete_collection(self, name: str) -> None:
        await self._run(ops.delete_collection(name))

    async def optimize(self, name: str) -> dict[str, Any]:
        return await self._run(ops.optimize(name))

    async def add(
        self, collection: str, items: Iterable[Item], *, skip_existing: bool = False, progress: bool = False,
        concurrency: int | None = None, total: int | None = None,
    ) -> AddResult:
        s = self.settings
        in_flight = check_concurrency(concurrency if concurrency is not None else s.concurrency)
        with add_progress(known_total(items, total), f"index {collection}", progress) as on_progress:
            job = BulkAdd(
                collection, items, sizing=ops.Sizing(s.batch_size, s.max_request_bytes), batch_size=s.batch_size,
                skip_existing=skip_existing, on_progress=on_progress,
            )
            return await self._run_bulk(job, in_flight)

    async def _run_bulk(self, job: BulkAdd, concurrency: int) -> AddResult:
        """Run a job's slices as tasks, `concurrency` at a time; on an error or cancellation the others are cancelled."""
        running: set[asyncio.Task] = set()
        try:
            while True:
                while len(running) < concurrency and (operation := job.next_slice()) is not None:
                    running.add(asyncio.ensure_future(self._run(operation)))
                if not running:
                    return job.outcome()
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    job.finish(task.result())
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def delete(self, collection: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | None = None) -> int:
        return await self._run(ops.delete_items(collection, ids=ids, filter=filter))

    async def get(self, collection: str, item_id: str, *, with_vector: bool = False) -> StoredItem:
        return await self._run(ops.get_item(collection, item_id, with_vector=with_vector))

    async def iter_items(
        self, collection: str, *, filter: dict[str, Any] | None = None, modality: str | None = None, with_vectors: bool = False, page_size: int = 256
    ) -> AsyncIterator[StoredItem]:
        cursor: str | None = None
        while True:
            page, cursor = await self._run(ops.scroll_page(collection, limit=page_size, cursor=cursor, filter=filter, modality=modality, with_vectors=with_vectors))
            for item in page:
                yield item
            if cursor is None:
                return

    async def exists(self, collection: str, ids: Sequence[str]) -> list[str]:
        return await self._run(ops.existing_ids(collection, ids))

    async def search(
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
        query = {"text": text, "image": image, "audio": audio, "url": url, "id": id, "vector": vector}
        options = {"top_k": top_k, "offset": offset, "filter": filter, "modality": modality, "score_threshold": score_threshold, "with_payload": with_payload}
        return await self._run(ops.search(collection, query, options))

    async def put_labelset(self, name: str, labels: Sequence[str], *, templates: Sequence[str] | None = None, description: str = "") -> LabelSet:
        return await self._run(ops.put_labelset(name, labels, templates=templates, description=description))

    async def get_labelset(self, name: str) -> LabelSet:
        return await self._run(ops.get_labelset(name))

    async def list_labelsets(self) -> list[LabelSet]:
        return await self._run(ops.list_labelsets())

    async def delete_labelset(self, name: str) -> None:
        await self._run(ops.delete_labelset(name))
