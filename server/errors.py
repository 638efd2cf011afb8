"""Turning package errors into MCP tool errors, message unchanged."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from builder.errors import BuildError
from knowledge.errors import KnowledgeError
from sandbox.errors import SandboxError

P = ParamSpec("P")
R = TypeVar("R")

KNOWN_ERRORS = (BuildError, SandboxError, KnowledgeError)


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a tool so that our own errors reach the client as tool errors with their message."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except KNOWN_ERRORS as e:
            raise ToolError(str(e)) from e

    return wrapper
