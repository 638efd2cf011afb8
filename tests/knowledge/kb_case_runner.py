"""Runs a starter's cases.json against its server over a real MCP stdio connection (test helper)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters


def result_value(result: Any) -> Any:
    """The value of a tool result: structuredContent unwrapped from {"result": x}, else JSON text, else text."""
    structured = result.structured_content
    if isinstance(structured, dict) and set(structured) == {"result"}:
        return structured["result"]
    text = "".join(getattr(block, "text", "") for block in result.content)
    try:
        return json.loads(text)
    except ValueError:
        return text


def result_text(result: Any) -> str:
    """All text content of a tool result joined."""
    return "".join(getattr(block, "text", "") for block in result.content)


def check(case: dict[str, Any], result: Any) -> str | None:
    """None when the result meets the case's expectation, else what was wrong."""
    expect = case["expect"]
    ((kind, want),) = expect.items()
    if kind == "error":
        if not result.is_error:
            return f"expected an error, got {result_text(result)[:200]!r}"
        if isinstance(want, str) and want not in result_text(result):
            return f"error {result_text(result)[:200]!r} lacks {want!r}"
        return None
    if result.is_error:
        return f"unexpected error: {result_text(result)[:300]}"
    value = result_value(result)
    text = value if isinstance(value, str) else json.dumps(value)
    if kind == "equals" and value != want:
        return f"expected {want!r}, got {value!r}"
    if kind == "contains" and want not in text and want not in result_text(result):
        return f"{want!r} not in {text[:300]!r}"
    if kind == "matches" and not re.search(want, text):
        return f"{want!r} does not match {text[:300]!r}"
    if kind == "schema":
        try:
            jsonschema.validate(value, want)
        except jsonschema.ValidationError as exc:
            return f"schema: {exc.message}"
    return None


async def run_starter(directory: Path, python: str) -> tuple[list[str], list[str]]:
    """Start the starter with `python`, list its tools and run every case; returns (tool names, failures)."""
    directory = directory.resolve()
    cases = json.loads((directory / "cases.json").read_text())["cases"]
    params = StdioServerParameters(command=python, args=[str(directory / "server.py")], cwd=str(directory))
    failures = []
    async with Client(params, read_timeout_seconds=60) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        for case in cases:
            result = await client.call_tool(case["tool"], case["arguments"])
            problem = check(case, result)
            if problem:
                failures.append(f"{directory.name}/{case.get('name', case['tool'])}: {problem}")
    return tools, failures
