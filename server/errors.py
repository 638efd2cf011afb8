"""Turning package errors into MCP tool errors, message unchanged."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from builder.errors import BuildError
from knowledge.errors import KnowledgeError
from sandbox.errors import SandboxError
from server.gateway.errors import GatewayError

P = ParamSpec("P")
R = TypeVar("R")

KNOWN_ERRORS = (BuildError, SandboxError, KnowledgeError, GatewayError)


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a tool so that our own errors reach the client as tool errors with their message."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except KNOWN_ERRORS as e:
            raise ToolError(str(e)) from e

    return wrapper


_CONSTRAINTS = {"minLength": "at least {} characters", "maxLength": "at most {} characters", "minimum": ">= {}",
                "maximum": "<= {}", "exclusiveMinimum": "> {}", "exclusiveMaximum": "< {}", "pattern": "matching {}",
                "enum": "one of {}", "maxItems": "at most {} items", "type": "type {}"}


def _accepted(prop: dict[str, Any]) -> str:
    """What a JSON-schema property accepts, in words: its description and its constraints."""
    variants = [prop, *prop.get("anyOf", [])]
    limits = [text.format(v) for p in variants for key, text in _CONSTRAINTS.items()
              if (v := p.get(key)) is not None and not (key == "type" and v == "null")]
    parts = [prop.get("description", "").rstrip("."), ", ".join(limits)]
    return ": ".join(x for x in parts if x) or "see the tool's schema"


def argument_error(tool: str, error: ValidationError, schema: dict[str, Any] | None) -> str:
    """One line per rejected argument: which field, what was wrong, what is accepted (no pydantic boilerplate)."""
    props = (schema or {}).get("properties", {})
    lines = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        prop = props.get(str(err["loc"][0])) if err["loc"] else None
        accepted = _accepted(prop) if prop else "the arguments " + ", ".join(props)
        lines.append(f"{field}: {err['msg']} (accepted: {accepted})")
    return f"{tool}: invalid arguments: " + "; ".join(lines)
