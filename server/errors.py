"""Turning package errors into MCP tool errors, message unchanged."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
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


def argument_problems(error: ValidationError, schema: dict[str, Any] | None) -> list[str]:
    """One line per rejected argument: which field, what was wrong, what is accepted (no pydantic boilerplate)."""
    props = (schema or {}).get("properties", {})
    lines = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        prop = props.get(str(err["loc"][0])) if err["loc"] else None
        accepted = _accepted(prop) if prop else "the arguments " + ", ".join(props)
        lines.append(f"{field}: {err['msg']} (accepted: {accepted})")
    return lines


def argument_error(tool: str, error: ValidationError, schema: dict[str, Any] | None) -> str:
    """The rejected arguments of a call to `tool`, in one message (see argument_problems)."""
    return f"{tool}: " + "; ".join(argument_problems(error, schema))


_JSON_TYPES = {"null": "null", "boolean": "true or false", "integer": "an integer", "number": "a number",
               "string": "a string", "array": "a list", "object": "an object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def strict_type_errors(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    """One line per argument whose JSON type the tool's schema does not list (no lax "yes" -> true, "5" -> 5).

    Only declared types are enforced (`type`, or the `type` of each `anyOf` branch);
    constraints are left to the tool's own validation.
    """
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    problems = []
    for field, value in arguments.items():
        prop = props.get(field)
        if not isinstance(prop, dict):
            continue
        declared: set[Any] = set()
        for variant in prop.get("anyOf", [prop]):
            kind = variant.get("type") if isinstance(variant, dict) else None
            declared.update(kind if isinstance(kind, list) else [kind])
        if None in declared or not declared or not declared <= set(_JSON_TYPES):
            continue  # a branch without a declared type accepts anything this check could judge
        given = _json_type(value)
        if given in declared or (given == "integer" and "number" in declared):
            continue
        wanted = " or ".join(_JSON_TYPES.get(t, str(t)) for t in sorted(declared, key=list(_JSON_TYPES).index))
        shown = json.dumps(value, ensure_ascii=False, default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        problems.append(f"{field}: must be {wanted}, got {_JSON_TYPES.get(given, given)} {shown} "
                        f"(accepted: {_accepted(prop)})")
    return problems


def explain_tool_error(tool: str, error: ToolError, schema: dict[str, Any] | None,
                       tools: list[str]) -> tuple[str, BaseException | None]:
    """The message a client gets for a failed call, and the exception to log when it was a crash of ours.

    Every message reads `<tool>: ...`: rejected arguments one line each, our packages'
    errors as they are, a deliberate ToolError without the SDK's prefix, and a crash as
    "internal error" (its traceback goes to the log, not to the client).
    """
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__
    if schema is None:
        shown = tool if len(tool) <= 80 else tool[:77] + "..."
        return f"{shown!r}: no such tool (accepted: {', '.join(tools)})", None
    for cause in chain:
        if isinstance(cause, ValidationError):
            return argument_error(tool, cause, schema), None
        if isinstance(cause, KNOWN_ERRORS):
            return f"{tool}: {cause}", None
    if isinstance(error, UnexpectedToolError):
        crash = chain[-1]
        return (f"{tool}: internal error ({type(crash).__name__}); this is a bug in mcp-foundry, and its traceback is "
                "in the log file (logs/mcp-foundry.log in the data directory)"), crash
    deliberate = next((c for c in reversed(chain) if isinstance(c, ToolError)), error)
    text = str(deliberate).removeprefix(f"Error executing tool {tool}: ").removeprefix(f"{tool}: ")
    return f"{tool}: {text}", None
