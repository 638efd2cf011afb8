"""The cases in a live session: what one case does (call a tool, read a resource or get a prompt) and what came
back, and the run of every case in order, each judged.

A tool fails with an isError result (a JSON-RPC error is a protocol fault, left to the caller to
classify). A resource read or a prompt get has no isError: failing with a JSON-RPC error is how
they say no, so that error is the case's outcome, judged like a tool's error result.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from pydantic import BaseModel

from sandbox.cases import (
    Case,
    expand_fixtures,
    judge_bounded,
    prompt_value,
    resource_value,
    result_text,
    result_value,
    text_form,
)
from sandbox.failures import call_failure, last_exception
from sandbox.fixtures import FIXTURES_SCRIPT, FixtureError, Fixtures
from sandbox.report import CaseResult, FailureClass, PromptInfo, Recorder, ResourceInfo, ToolInfo
from sandbox.stdio import ServerIO


class Outcome(BaseModel):
    """What a case's request gave."""

    is_error: bool
    value: Any = None
    """The value judged (see sandbox.cases); the error text when is_error."""
    text: str = ""
    """The text an `error` expectation looks into."""


async def exercise(client: Client, case: Case, arguments: dict[str, Any]) -> Outcome:
    """Send the case's request with `arguments` (fixture references already expanded)."""
    if case.kind == "tool":
        result = await client.call_tool(case.target, arguments)
        text = result_text(result.content)
        value = text if result.is_error else result_value(result.structured_content, text)
        return Outcome(is_error=result.is_error, value=value, text=text)
    try:
        if case.kind == "resource":
            value = resource_value((await client.read_resource(case.target)).contents)
        else:
            value = prompt_value((await client.get_prompt(case.target, arguments)).messages)
    except MCPError as exc:
        return Outcome(is_error=True, value=str(exc), text=str(exc))
    return Outcome(is_error=False, value=value, text=text_form(value))


def unlisted(case: Case, tools: dict[str, ToolInfo], report: dict[str, Any]) -> str | None:
    """Why the case's target is not among what the server listed, or None when it is."""
    if case.kind == "tool":
        if case.target in tools:
            return None
        return f"tool {case.target!r} is not listed by the server (listed: {', '.join(tools) or 'none'})"
    if case.kind == "prompt":
        prompts: list[PromptInfo] = report.get("prompts", [])
        if any(p.name == case.target for p in prompts):
            return None
        listed = ", ".join(p.name for p in prompts) or "none"
        return f"prompt {case.target!r} is not listed by the server (listed: {listed})"
    resources: list[ResourceInfo] = report.get("resources", [])
    if any(served(r, case.target) for r in resources):
        return None
    listed = ", ".join(r.uri for r in resources) or "none"
    return f"resource {case.target!r} matches no resource or resource template the server lists (listed: {listed})"


def served(resource: ResourceInfo, uri: str) -> bool:
    """Whether reading `uri` reaches this listed resource (equal URI) or template (the template matches it)."""
    if not resource.template:
        return resource.uri == uri
    try:
        return UriTemplate.parse(resource.uri).match(uri) is not None
    except Exception:  # noqa: BLE001 - a template the SDK cannot parse serves nothing
        return False


async def run_cases(client: Client, cases: list[Case], tools: dict[str, ToolInfo], io: ServerIO,
                    rec: Recorder, report: dict[str, Any], call_timeout: float,
                    fixtures: Fixtures | None = None) -> None:
    """Run each case in order in this one session, judge it, and after every error check that the server answers."""
    results = report.setdefault("cases", [])
    for index, case in enumerate(cases):
        name = f"case {case.label(index)}"
        rec.progress(0.45 + 0.5 * index / max(len(cases), 1), name)
        expected = case.expect.as_json() if case.expect else None
        try:
            reason = unlisted(case, tools, report)
            arguments = _with_fixtures(case, fixtures)
        except FixtureError as exc:
            reason = str(exc)
        if reason is not None:
            results.append(_case_result(case, expected, None, False, False, 0.0, reason))
            rec.check(name, False, reason, failure_class="assertion")
            continue
        stderr_mark = len(io.stderr)
        t = time.monotonic()
        try:
            with anyio.fail_after(call_timeout):
                outcome = await exercise(client, case, arguments)
        except Exception as exc:  # noqa: BLE001 - every way a call can go wrong is a verdict
            seconds = time.monotonic() - t
            klass, reason = call_failure(exc, io, call_timeout)
            results.append(_case_result(case, expected, None, False, False, seconds * 1000, reason))
            rec.check(name, False, reason, seconds, klass)
            if io.returncode is not None or klass == "timeout":
                return  # dead or stuck: later cases would only repeat this failure
            continue
        seconds = time.monotonic() - t
        failed = {"tool": "tool returned an error result", "resource": "reading the resource failed",
                  "prompt": "getting the prompt failed"}[case.kind]
        passed, reason = await judge_bounded(case.expect, is_error=outcome.is_error, value=outcome.value,
                                             text=outcome.text, failed=failed)
        if outcome.is_error and not passed:
            crash = last_exception(io.stderr[stderr_mark:].decode("utf-8", errors="replace"))
            reason += f" (server stderr: {crash})" if crash else ""
        results.append(_case_result(case, expected, outcome.value, outcome.is_error, passed, seconds * 1000, reason))
        klass: FailureClass = "runtime" if outcome.is_error else "assertion"
        rec.check(name, passed, reason, seconds, klass)
        if outcome.is_error:
            await _alive_check(client, case.target, rec)


def _with_fixtures(case: Case, fixtures: Fixtures | None) -> dict[str, Any]:
    """The case's arguments with its fixture references replaced (FixtureError when one cannot be)."""
    wanted = case.fixtures()
    if wanted and fixtures is None:
        raise FixtureError(f"the case refers to fixture(s) {wanted}, but the server directory has no "
                           f"{FIXTURES_SCRIPT} to make them")
    return expand_fixtures(case.arguments, fixtures.resolve) if wanted and fixtures else case.arguments


def _case_result(case: Case, expected: dict[str, Any] | None, actual: Any, is_error: bool, passed: bool,
                 latency_ms: float, reason: str) -> CaseResult:
    return CaseResult(tool=case.tool or "", resource=case.resource, prompt=case.prompt, name=case.name,
                      arguments=case.arguments, expected=expected, actual=actual, is_error=is_error, passed=passed,
                      latency_ms=round(latency_ms, 2), reason=reason)


async def _alive_check(client: Client, tool: str, rec: Recorder) -> None:
    t = time.monotonic()
    try:
        with anyio.fail_after(10):
            await client.list_tools()
    except Exception as exc:  # noqa: BLE001
        rec.check(f"alive after {tool} error", False, f"the server stopped answering after {tool} returned an "
                  f"error: {type(exc).__name__}: {exc}", time.monotonic() - t, "runtime")
        return
    rec.check(f"alive after {tool} error", True, "the server still answers tools/list", time.monotonic() - t)
