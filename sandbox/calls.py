"""What one case does in a live session: call a tool, read a resource or get a prompt, and what came back.

A tool fails with an isError result (a JSON-RPC error is a protocol fault, left to the caller to
classify). A resource read or a prompt get has no isError: failing with a JSON-RPC error is how
they say no, so that error is the case's outcome, judged like a tool's error result.
"""

from __future__ import annotations

from typing import Any

from mcp.client.client import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from pydantic import BaseModel

from sandbox.cases import Case, prompt_value, resource_value, result_text, result_value, text_form
from sandbox.report import PromptInfo, ResourceInfo, ToolInfo


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
