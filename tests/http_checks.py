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
