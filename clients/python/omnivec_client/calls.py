"""What a client sends: HTTP calls described as data, and how an answer becomes a result or an error.

Operations (operations.py) are generators that yield `Call`s, `Sleep`s and `Work` and receive the
decoded answers, so the sync and the async client drive the same logic and differ only in how they wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, TypeVar, Union

import httpx

from .errors import OmnivecError, transport_error
from .retry import RetryPolicy, parse_retry_after

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request; its answer is the decoded JSON body, or an OmnivecError thrown back in."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    retry: bool = True  # False for probes that must answer now (health) or poll on their own (wait_ready)
    resend: bool = True  # False where a repeat after a lost answer misleads (a create answers 409, a delete 404)
    timeout_s: float | None = None  # None: the client's timeout


@dataclass(frozen=True)
class Sleep:
    """Wait this long before the next step (an operation polling, or a call about to be retried)."""

    seconds: float


@dataclass(frozen=True)
class Work:
    """Blocking local work (reading and encoding files): the async client runs it in a thread so
    the event loop keeps serving other calls; its result or exception comes back like a Call's."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


Step = Union[Call, Sleep, Work]
Operation = Generator[Step, Any, T]


def error_from_response(response: httpx.Response) -> OmnivecError:
    """The server's error body ({"error": {"code", "status", "message"}}) as an exception."""
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
        error = body["error"]
        return OmnivecError(error["message"], code=error["code"], status=response.status_code, retry_after=retry_after)
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:500] or response.reason_phrase
        return OmnivecError(text, code=f"http_{response.status_code}", status=response.status_code, retry_after=retry_after)


# Transport errors raised before the request left: resending cannot repeat anything.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def settle(policy: RetryPolicy, attempt: int, call: Call, outcome: httpx.Response | Exception, base_url: str) -> Any:
    """What one try of a call comes to: the decoded answer, a Sleep before the next try, or the
    OmnivecError to raise (an error answer, or no answer, once the policy says stop).

    `outcome` is the response or the transport error. A request that may have reached the server
    (read timeout, dropped connection) is resent only if the call allows it. Responses are read by
    duck typing, so an httpx-compatible client passed in by the caller (starlette's TestClient may
    be httpx2) works too.
    """
    answered = not isinstance(outcome, Exception)
    if answered and outcome.status_code < 400:
        return outcome.json()
    if answered:
        retryable = outcome.status_code in policy.statuses
    else:
        retryable = isinstance(outcome, NOT_SENT) or call.resend
    if retryable and attempt < policy.attempts:
        retry_after = parse_retry_after(outcome.headers.get("retry-after")) if answered else None
        return Sleep(policy.delay_s(attempt, retry_after))
    if answered:
        raise error_from_response(outcome)
    raise transport_error(base_url, outcome, sent=not isinstance(outcome, NOT_SENT)) from outcome
