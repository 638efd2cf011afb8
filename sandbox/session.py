"""One MCP session with a server under test: the handshake, the lists and their definitions, then the cases.

The session goes through our own stdio transport (sandbox.stdio), so stray stdout is
caught verbatim; its checks are recorded in order, the stdout check right after
initialize, since noise there is what breaks a real client's handshake.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from sandbox.calls import run_cases
from sandbox.cases import Case
from sandbox.failures import start_failure
from sandbox.fixtures import Fixtures
from sandbox.report import Check, PromptInfo, Recorder, ResourceInfo, ToolInfo
from sandbox.spec import Launch
from sandbox.stdio import ServerIO, stdio_transport

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


async def run_session(launch: Launch, workdir: Path, cases: list[Case], io: ServerIO, rec: Recorder,
                      report: dict[str, Any], local_modules: set[str], init_timeout: float, call_timeout: float,
                      fixtures: Fixtures | None = None) -> None:
    """Initialize, list, check definitions and run the cases against the server started by `launch`."""
    # mode="legacy": the initialize handshake every deployed client (Claude Desktop included) performs.
    # The read timeout bounds the initialize request too: it must not cut the initialize limit short.
    client = Client(stdio_transport(launch, workdir, io), mode="legacy", cache=None,
                    read_timeout_seconds=max(call_timeout, init_timeout),
                    client_info=types.Implementation(name="mcp-foundry-validator", version="0.1.0"))
    noise_at = len(rec.checks) + 1  # the stdout check goes right after initialize: noise breaks handshakes
    t = time.monotonic()
    started, failure = False, None
    try:
        # One scope whose deadline covers only the handshake: the client's task group must open and close in it.
        with anyio.CancelScope(deadline=anyio.current_time() + init_timeout) as init_scope:
            async with client:
                started, init_scope.deadline = True, math.inf
                rec.check("initialize", True, f"protocol {client.protocol_version}, server "
                          f"{_server_label(client)} in {time.monotonic() - t:.2f} s", time.monotonic() - t)
                report["protocol_version"] = client.protocol_version
                report["server_info"] = client.server_info.model_dump(exclude_none=True) if client.server_info else None
                report["capabilities"] = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
                rec.progress(0.35, "listing tools, resources and prompts")
                tools = await _list_everything(client, rec, report)
                if tools is not None:
                    await run_cases(client, cases, tools, io, rec, report, call_timeout, fixtures)
    except Exception as exc:  # a closed pipe or a bad answer: verdicts about the server, not crashes of ours
        failure = exc
    if not started:
        # We stop a silent server ourselves once it is late: its exit code then says nothing about it.
        timed_out = init_scope.cancelled_caught or (
            isinstance(failure, MCPError) and failure.code == types.REQUEST_TIMEOUT)
        klass, reason = start_failure(failure, timed_out, io, local_modules, init_timeout)
        rec.check("initialize", False, reason, time.monotonic() - t, klass)
    elif failure is not None:
        rec.check("session", False, f"the session broke: {type(failure).__name__}: {str(failure)[:300]}",
                  failure_class="runtime" if io.returncode not in (None, 0) else "protocol")
    _noise_check(io, rec, noise_at)


def _server_label(client: Client) -> str:
    info = client.server_info
    return f"{info.name} {info.version}".strip() if info else "(anonymous)"


def _noise_check(io: ServerIO, rec: Recorder, at: int) -> None:
    if io.noise_count:
        shown = ", ".join(repr(line) for line in io.noise[:3])
        check = Check(name="stdout is JSON-RPC only", passed=False, failure_class="protocol",
                      reason=f"the server wrote {io.noise_count} line(s) to stdout that are not JSON-RPC messages "
                      f"({shown}); stdout is the protocol channel, so log and print to stderr instead")
    else:
        check = Check(name="stdout is JSON-RPC only", passed=True, reason="no stray output on stdout")
    rec.checks.insert(min(at, len(rec.checks)), check)
    rec.log(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.reason}")


async def _list_everything(client: Client, rec: Recorder, report: dict[str, Any]) -> dict[str, ToolInfo] | None:
    """tools/list plus a definition check per tool, then resources and prompts if advertised; None if tools/list fails."""
    t = time.monotonic()
    try:
        listed = await _all_pages(client.list_tools)
    except Exception as exc:  # noqa: BLE001 - any failure here is the server's
        rec.check("tools/list", False, f"tools/list failed: {type(exc).__name__}: {exc}", time.monotonic() - t,
                  "protocol")
        return None
    tools = [ToolInfo(name=tool.name, description=tool.description, input_schema=tool.input_schema,
                      output_schema=tool.output_schema,
                      annotations=tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations
                      else {}) for tool in listed]
    report["tools"] = tools
    rec.check("tools/list", bool(tools), f"{len(tools)} tool(s): {', '.join(t.name for t in tools)}" if tools
              else "the server lists no tools; an MCP server built here must offer at least one",
              time.monotonic() - t, "protocol")
    for tool in tools:
        problems = _definition_problems(tool)
        hints = ", ".join(f"{k}={v}" for k, v in tool.annotations.items() if k.endswith("Hint")) or "no annotations"
        rec.check(f"tool {tool.name[:70]}: definition", not problems,
                  "; ".join(problems) if problems else f"{len(tool.input_schema.get('properties', {}))} "
                  f"parameter(s), {hints}", failure_class="protocol")
    caps = client.server_capabilities
    for kind, advertised in (("resources", caps.resources), ("prompts", caps.prompts)):
        if advertised is None:
            continue
        t = time.monotonic()
        try:
            if kind == "resources":
                items = [ResourceInfo(uri=str(r.uri), name=r.name, description=r.description, mime_type=r.mime_type)
                         for r in await _all_pages(client.list_resources)]
                items += [ResourceInfo(uri=r.uri_template, name=r.name, description=r.description,
                                       mime_type=r.mime_type, template=True)
                          for r in await _all_pages(client.list_resource_templates)]
            else:
                items = [PromptInfo(name=p.name, description=p.description,
                                    arguments=[a.name for a in p.arguments or []])
                         for p in await _all_pages(client.list_prompts)]
        except Exception as exc:  # noqa: BLE001
            rec.check(f"{kind}/list", False, f"{kind} capability advertised but listing failed: {exc}",
                      time.monotonic() - t, "protocol")
            continue
        report[kind] = items
        rec.check(f"{kind}/list", True, f"{len(items)} {kind}", time.monotonic() - t)
    return {tool.name: tool for tool in tools}


async def _all_pages(fetch: Callable[..., Any], cap: int = 50) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(cap):  # a paginator that never ends must not hang validation
        page = await fetch(cursor=cursor)
        items += getattr(page, "tools", None) or getattr(page, "resources", None) or \
            getattr(page, "resource_templates", None) or getattr(page, "prompts", None) or []
        cursor = page.next_cursor
        if not cursor:
            break
    return items


def _definition_problems(tool: ToolInfo) -> list[str]:
    """What is wrong with a listed tool: its name and its input/output schemas."""
    problems = []
    if not TOOL_NAME.match(tool.name):
        bad = sorted({c for c in tool.name if not re.match(r"[A-Za-z0-9_-]", c)})
        why = f"characters {bad} are not allowed" if bad else f"it is {len(tool.name)} characters long"
        problems.append(f"tool name {tool.name[:80]!r} is rejected by clients: {why}; use 1-64 of "
                        "A-Z a-z 0-9 _ -")
    for label, schema in (("inputSchema", tool.input_schema), ("outputSchema", tool.output_schema)):
        if schema is None:
            continue
        if schema.get("type") != "object":
            problems.append(f"{label} must have \"type\": \"object\", got {schema.get('type')!r}")
        if "properties" in schema and not isinstance(schema["properties"], dict):
            problems.append(f"{label}.properties must be an object mapping parameter names to schemas")
        try:
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"{label} is not a valid JSON schema: {exc.message}")
    return problems
