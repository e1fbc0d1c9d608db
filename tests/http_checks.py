"""Assertions shared by the HTTP API tests."""

from __future__ import annotations

import httpx


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    """The response is our error shape with this status and code, and its message says each word."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    for word in words:
        assert word in error["message"], error["message"]


def assert_still_serving(url: str) -> None:
    """After a test (bad inputs included) the server is alive and still embeds."""
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    ok = httpx.post(f"{url}/v1/embed", json={"texts": ["still alive"]}, timeout=30)
    assert ok.status_code == 200, "the server must keep serving after every test"
