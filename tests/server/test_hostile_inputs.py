"""Hostile calls to every tool over real stdio: no crash, no traceback, no bare "Error executing tool".

The tools are enumerated from tools/list and the inputs generated from each tool's input
schema, so a tool added later is covered without touching this file. Every job a call
manages to start is cancelled at once: the suite exercises the MCP face, not builds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.server.conftest import FOUNDRY, ROOT, foundry_env

STRINGS = ["", " ", "\0", "a\0b", "x" * 100_000, "../../../../etc/passwd", "/proc/1/root", "/proc/self/environ",
           "/dev/zero", "'unbalanced", '"', "$(touch /tmp/pwned)", "; rm -rf /", "\u202egnp.exe", "😀" * 500,
           "\n\r\t", "%s%n%x", "{{7*7}}", "-1", "yes", "null", "AAAA" * 3000, "C:\\Windows\\System32", "~root/.ssh"]
WRONG_TYPES: list[Any] = [None, True, 0, -1, 2**63, -1e308, 0.5, ["x"] * 50, {"a": {"b": {"c": None}}}, "true"]
DEEP: Any = "leaf"
for _ in range(60):
    DEEP = {"k": [DEEP]}


def plausible(schema: dict[str, Any]) -> Any:
    """A value of the right type for a property: the base the hostile value of another property is set against."""
    kinds = {v.get("type") for v in schema.get("anyOf", [schema]) if isinstance(v, dict)} - {"null", None}
    if "enum" in schema:
        return schema["enum"][0]
    for kind, value in (("string", "abcdefghij"), ("integer", 1), ("number", 1.0), ("boolean", False),
                        ("array", []), ("object", {})):
        if kind in kinds:
            return value
    return None


def hostile_calls(tool: Any) -> list[dict[str, Any]]:
    """Argument sets for one tool: nothing, unknown keys, then each property set to each hostile value in turn."""
    schema = tool.input_schema or {}
    props: dict[str, Any] = schema.get("properties", {})
    base = {name: plausible(props[name]) for name in schema.get("required", []) if name in props}
    calls: list[dict[str, Any]] = [{}, {**base, "__proto__": {"admin": True}, "unknown_field": "x"},
                                   {**base, **{f"extra{i}": i for i in range(200)}}]
    for index, name in enumerate(props):
        # Every wrong type, and a window of the hostile strings that moves on with each property.
        strings = [STRINGS[(index * 5 + k) % len(STRINGS)] for k in range(5)]
        for value in [*strings, *WRONG_TYPES, DEEP]:
            calls.append({**base, name: value})
    return calls


def check(tool: str, arguments: dict[str, Any], outcome: Any) -> str | None:
    """Why an outcome is unacceptable, or None."""
    if isinstance(outcome, BaseException):
        return f"raised {type(outcome).__name__}: {outcome}"
    text = " ".join(getattr(block, "text", "") for block in outcome.content)
    if "Traceback" in text or "internal error" in text:
        return f"crash text: {text[:300]}"
    if outcome.is_error:
        if text.strip() in (f"Error executing tool {tool}", ""):
            return f"bare error: {text!r}"
        if not text.startswith((f"{tool}: ", f"{tool[:77]!r}")):
            return f"error not in the '<tool>: <field>: ...' form: {text[:300]}"
    return None


def test_hostile_calls_to_every_tool_neither_crash_nor_leak_tracebacks(data_dir, tmp_path):
    stderr_path = tmp_path / "serve.stderr"
    params = StdioServerParameters(command=FOUNDRY[0], args=[*FOUNDRY[1:], "serve"], cwd=str(ROOT),
                                   env=foundry_env(data_dir, MCP_FOUNDRY_MAX_JOBS="1"))
    problems: list[str] = []
    counts: dict[str, int] = {}
    spent: dict[str, float] = {}

    async def main() -> list[str]:
        with open(stderr_path, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
                tools = (await client.list_tools()).tools
                tools.append(tools[0].model_copy(update={"name": "no_such_tool"}))  # unknown names too
                for tool in tools:
                    for arguments in hostile_calls(tool):
                        started = time.monotonic()
                        try:
                            outcome: Any = await client.call_tool(tool.name, arguments)
                        except MCPError as exc:
                            outcome = exc
                        counts[tool.name] = counts.get(tool.name, 0) + 1
                        spent[tool.name] = spent.get(tool.name, 0.0) + time.monotonic() - started
                        problem = check(tool.name, arguments, outcome)
                        if problem:
                            problems.append(f"{tool.name}({json.dumps(arguments)[:200]}): {problem}")
                        job = (getattr(outcome, "structured_content", None) or {}).get("job_id")
                        if job and not getattr(outcome, "is_error", True):
                            await client.call_tool("cancel_build", {"job_id": job})
                alive = await client.call_tool("list_builds", {"limit": 500})
                assert not alive.is_error, alive.content
                return [t.name for t in tools]

    names = anyio.run(main)
    stderr = stderr_path.read_text()
    print(f"{sum(counts.values())} hostile calls: " + ", ".join(f"{name} {n} in {spent[name]:.1f} s"
                                                             for name, n in counts.items()))
    assert set(counts) == set(names) and min(counts.values()) >= 3
    assert sum(counts.values()) >= 200
    assert problems == [], "\n".join(problems[:30])
    assert "Traceback" not in stderr, stderr[-3000:]
