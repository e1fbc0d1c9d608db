"""A real uvicorn server on 127.0.0.1 in a background thread, around an app built in the test.

Used when a test must control the encoder (slow it down, make it fail on one input) while
still going through real HTTP, real preprocessing and the real ONNX model.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

import httpx
import uvicorn

from omnivec.server_process import free_port


class InProcessServer:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InProcessServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("in-process server did not become ready")

    def shutdown(self) -> None:
        self.server.should_exit = True

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.thread.join(30)


def one_thread_settings(data_dir, bundle):
    """Settings serving `bundle` from `data_dir` with every thread pool at 1 (2 shared cores: more is slower)."""
    from omnivec.server.settings import Settings

    settings = Settings(data_dir=data_dir)
    settings.model.bundle = bundle
    settings.model.intra_op_threads = 1
    settings.server.preprocess_threads = 1
    settings.index.search_threads = 1
    return settings


@contextlib.contextmanager
def engine_server(engine: str, settings) -> Iterator[InProcessServer]:
    """The app on `engine` ("edge": its files under settings.data_dir; "qdrant": qdrant-client in memory) behind real HTTP,
    with `.client` (httpx, base_url set), `.engine`, `.settings` and `.store` (None for edge) attached."""
    from omnivec.server.api.app import create_app

    store = None
    if engine == "qdrant":
        from omnivec.server.index import QdrantIndexStore

        store = QdrantIndexStore.from_settings(":memory:")
    try:
        with InProcessServer(create_app(settings, store=store)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            srv.client, srv.engine, srv.settings, srv.store = client, engine, settings, store
            yield srv
    finally:
        if store is not None:
            store.close()


class SlowEncoder:
    """Wraps a real encoder: adds latency per call, records rows, optionally fails on a token id."""

    def __init__(self, inner, delay: float = 0.0, poison_token: int | None = None) -> None:
        self.inner = inner
        self.modality = inner.modality
        self.input_names = inner.input_names
        self.dim = inner.dim
        self.delay = delay
        self.poison_token = poison_token
        self.batches: list[int] = []
        self.seen_ids: list = []
        self._lock = threading.Lock()

    def encode(self, inputs):
        with self._lock:
            self.batches.append(len(next(iter(inputs.values()))))
            if "input_ids" in inputs:
                self.seen_ids.extend(inputs["input_ids"].tolist())
        time.sleep(self.delay)
        if self.poison_token is not None and (inputs["input_ids"] == self.poison_token).any():
            raise RuntimeError("the model cannot handle this token")
        return self.inner.encode(inputs)

    def close(self) -> None:
        self.inner.close()
