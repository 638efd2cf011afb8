"""Tokens arriving from a streamed completion, reported to whoever hooked the current task.

A provider that streams calls `report(...)` as pieces arrive; a build wraps its model calls in
`listening(callback)` to turn them into job progress. The hook is a context variable rather than a
parameter of `LLMProvider.complete`, so every provider keeps the one small protocol and concurrent
builds sharing a provider each see only their own stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pydantic import BaseModel


class StreamProgress(BaseModel):
    """How far one streamed completion has come."""

    tokens: int
    """Pieces received so far (content and reasoning deltas; one is usually one token)."""
    chars: int
    """Characters of reply text received so far."""
    seconds: float
    """Since the request was sent."""


Listener = Callable[[StreamProgress], None]

_listener: ContextVar[Listener | None] = ContextVar("mcp_foundry_llm_progress", default=None)


@contextmanager
def listening(callback: Listener) -> Iterator[None]:
    """Send the progress of every completion streamed inside this block (in this task) to `callback`."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def report(progress: StreamProgress) -> None:
    """Tell the current listener, if any; a failing listener never breaks the completion."""
    callback = _listener.get()
    if callback is not None:
        try:
            callback(progress)
        except Exception:  # noqa: BLE001 - progress is advisory; the reply matters more
            pass


def at_most_every(seconds: float, callback: Listener) -> Listener:
    """`callback`, called at most once per `seconds` (job progress is written to a store, tokens come fast)."""
    last = [float("-inf")]

    def throttled(progress: StreamProgress) -> None:
        if progress.seconds - last[0] >= seconds:
            last[0] = progress.seconds
            callback(progress)

    return throttled
