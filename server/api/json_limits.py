"""JSON bodies parsed with limits, so hostile JSON is a 422 and never a 500.

Python's json parser recurses once per nesting level: a body nested a few thousand levels deep
raises RecursionError, and one a few hundred deep parses but breaks whatever recurses over it
later (validation, filters, the response encoder). Integers of more than 4300 digits raise
ValueError, and `NaN`/`Infinity` are not JSON but Python accepts them (a NaN in a vector query
poisons the search). Every JSON body — the ones routes read by hand and the ones FastAPI parses
(through `BoundedJsonRoute`) — goes through `loads_bounded`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Coroutine

from fastapi import Request, Response
from fastapi.routing import APIRoute

MAX_JSON_DEPTH = 64  # far beyond any payload, filter or request this API takes; far below Python's recursion limit


class JsonBodyError(json.JSONDecodeError):
    """A body that is not acceptable JSON; a JSONDecodeError so FastAPI reports it as a validation error."""

    def __init__(self, reason: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(reason, doc, pos)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of the float range")
    return value


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON; send finite numbers")


def depth_of(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counted until it passes `limit` (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads_bounded(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses (JsonBodyError) deep nesting, huge integers and non-finite numbers."""
    try:
        value = json.loads(data, parse_float=_finite, parse_constant=_no_constants)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JsonBodyError(f"it is nested deeper than {max_depth} levels; flatten it") from None
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"it is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # integers over 4300 digits, NaN/Infinity, floats out of range
        raise JsonBodyError(str(exc)) from None
    if depth_of(value, max_depth) > max_depth:
        raise JsonBodyError(f"it is nested deeper than {max_depth} levels; flatten it")
    return value


class BoundedJsonRequest(Request):
    """A Request whose `.json()` is `loads_bounded` (FastAPI's body parsing calls `.json()`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_bounded(await self.body())
        return self._json


class BoundedJsonRoute(APIRoute):
    """Route class for every router: FastAPI-parsed JSON bodies get the same limits as hand-read ones."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedJsonRequest(request.scope, request.receive, request._send))

        return bounded
