"""The client's connection settings, shared by the sync and async clients."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .bulk import DEFAULT_CONCURRENCY, check_concurrency
from .retry import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ClientSettings:
    """Where the server is and how requests are sized and retried.

    base_url defaults to $OMNIVEC_SERVER_URL, then http://127.0.0.1:8000; api_key to
    $OMNIVEC_API_KEY (sent as `Authorization: Bearer`, for servers with OMNIVEC_SERVER__API_KEYS). Bulk calls (embed,
    classify, add) send at most `batch_size` inputs and about `max_request_bytes` of encoded media
    per request, well under the server's default 64 MiB body limit. `add` keeps up to `concurrency`
    such requests in flight (1: one at a time, as before), so the server's model is not idle while
    one request travels.
    """

    base_url: str = field(default_factory=lambda: os.environ.get("OMNIVEC_SERVER_URL", DEFAULT_URL))
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 64
    max_request_bytes: int = 8 * 1024 * 1024
    headers: dict[str, str] = field(default_factory=dict)
    api_key: str | None = field(default_factory=lambda: os.environ.get("OMNIVEC_API_KEY") or None, repr=False)
    concurrency: int = DEFAULT_CONCURRENCY

    @classmethod
    def from_arguments(
        cls,
        base_url: str | None,
        timeout_s: float,
        retry: RetryPolicy | None,
        batch_size: int,
        max_request_bytes: int,
        headers: dict[str, str] | None,
        api_key: str | None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> "ClientSettings":
        """Settings from a client constructor's arguments (None: the default)."""
        defaults = cls()
        return cls(
            base_url=(base_url or defaults.base_url).rstrip("/"),
            timeout_s=timeout_s,
            retry=retry or defaults.retry,
            batch_size=batch_size,
            max_request_bytes=max_request_bytes,
            headers=dict(headers or {}),
            api_key=api_key or defaults.api_key,
            concurrency=concurrency,
        )

    @property
    def request_headers(self) -> dict[str, str]:
        """Headers every request carries: the caller's, plus the API key if there is one."""
        return {**self.headers, **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})}

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_request_bytes < 1:
            raise ValueError("batch_size and max_request_bytes must be positive")
        check_concurrency(self.concurrency)
