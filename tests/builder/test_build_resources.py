"""A build that asks for a resource template and a prompt, end to end: a scripted OpenAI-compatible endpoint at the
wire (streaming), real Reason checks, the real sandbox validating resource and prompt cases, a real deploy."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import anyio
import pytest
from fake_openai import Stream
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder.config import Settings
from builder.jobs import JobState
from builder.params import build_params
from builder.report import BuildReport
from builder.service import Foundry

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
REQUEST = "an MCP server that explains HTTP status codes, with a resource template http-status://{code}"

REQUIREMENT = {
    "server_name": "http_status", "summary": "Reason phrases of HTTP status codes.", "category": "web",
    "tools": [{"name": "reason_phrase", "description": "The reason phrase of an HTTP status code.",
               "params": [{"name": "code", "type": "integer", "description": "The status code."}],
               "returns": "the phrase",
               "examples": [{"arguments": {"code": 404}, "expect": {"equals": "Not Found"}},
                            {"arguments": {"code": 299}, "expect": {"error": "unknown"}}]}],
    "resources": [{"uri": "http-status://{code}", "name": "status", "mime_type": "text/plain",
                   "description": "The code and its reason phrase.",
                   "examples": [{"uri": "http-status://418", "expect": {"equals": "418 I'm a teapot"}}]}],
    "prompts": [{"name": "explain_status", "description": "Ask for a beginner's explanation of a code.",
                 "arguments": [{"name": "code", "description": "The status code."}],
                 "examples": [{"arguments": {"code": "404"}, "expect": {"contains": "404 Not Found"}}]}],
}

HEAD = '''"""Reason phrases of HTTP status codes."""
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import ToolAnnotations

mcp = MCPServer("http_status")
PHRASES = {200: "OK", 404: "Not Found", 418: "I'm a teapot"}


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                      open_world_hint=False))
def reason_phrase(code: int) -> str:
    """The reason phrase of an HTTP status code."""
    if code not in PHRASES:
        raise ToolError(f"unknown status code {code}; known: {sorted(PHRASES)}")
    return PHRASES[code]
'''
TEMPLATE = '''

@mcp.resource("http-status://{code}", name="status", description="The code and its phrase.", mime_type="text/plain")
def status(code: str) -> str:
    if not code.isdigit() or int(code) not in PHRASES:
        raise ResourceError(f"unknown status code {code!r}; read e.g. http-status://404")
    return f"{code} {PHRASES[int(code)]}"


@mcp.prompt(name="explain_status", description="Ask for a beginner's explanation of a code.")
def explain_status(code: str) -> str:
    phrase = PHRASES.get(int(code), "unknown") if code.isdigit() else "unknown"
    return f"Explain HTTP status {code} {phrase} to a beginner."
'''
TAIL = '''

if __name__ == "__main__":
    mcp.run()
'''
CASES = [
    {"tool": "reason_phrase", "arguments": {"code": 404}, "expect": {"equals": "Not Found"}},
    {"tool": "reason_phrase", "arguments": {"code": 299}, "expect": {"error": "unknown"}},
    {"resource": "http-status://418", "expect": {"equals": "418 I'm a teapot"}},
    {"resource": "http-status://299", "expect": {"error": "unknown status code"}},
    {"prompt": "explain_status", "arguments": {"code": "404"}, "expect": {"contains": "404 Not Found"}},
]


def draft(with_template: bool) -> str:
    cases = CASES if with_template else CASES[:2]
    files = {"server.py": HEAD + (TEMPLATE if with_template else "") + TAIL, "requirements.txt": "mcp==2.3.0\n",
             "cases.json": json.dumps({"cases": cases}), "README.md": "# http_status\n"}
    return json.dumps({"files": files})


def only_with(marker: str, reply: str):
    """The reply, only when the last user message carries `marker` (else an answer that fails the build)."""
    def answer(body: dict) -> str:
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return reply if marker in text else json.dumps({"error": f"prompt lacked {marker!r}"})
    return answer


@pytest.fixture
def foundry(tmp_path, fake_openai, fake_web, monkeypatch):
    for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_CASSETTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MCP_FOUNDRY_LLM_PROVIDER", "openai")
    monkeypatch.setenv("MCP_FOUNDRY_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("MCP_FOUNDRY_LLM_MODEL", "fake-model")
    monkeypatch.setenv("MCP_FOUNDRY_LLM_TIMEOUT", "5")
    fake_web.add_package("mcp", {"2.3.0": "2026-06-01T00:00:00Z"} | {f"1.{i}.0": "2025-01-01T00:00:00Z"
                                                                        for i in range(9)}, summary="MCP SDK")
    f = Foundry(Settings(data_dir=tmp_path / "data", env_cache_dir=ENV_CACHE, pypi_url=fake_web.url,
                         github_api_url=fake_web.url, max_turns=3))
    yield f
    f.store.close()


@pytest.mark.anyio
async def test_a_requested_resource_template_and_prompt_are_written_tested_and_served(foundry, fake_openai):
    analysis = json.dumps(REQUIREMENT)
    fake_openai.script([
        # Dripped for longer than the stall limit in total (5 s), each gap well under it: it completes.
        Stream(analysis, pieces=[analysis[i:i + 80] for i in range(0, len(analysis), 80)], gap_s=0.4),
        draft(with_template=False),
        only_with("requested resources not defined: http-status://{code}", draft(with_template=True)),
    ])
    caller = {"resource": "http-status://404", "expect": {"contains": "Not Found"}}
    seen: set[str] = set()
    t = time.monotonic()
    async with foundry.runner():
        job = foundry.queue.submit("build", build_params(REQUEST, examples=[caller]))
        with anyio.fail_after(240):
            while not (job := foundry.store.get(job.id)).final:
                seen.add(job.message)
                await anyio.sleep(0.1)
    assert job.state == JobState.succeeded, job.error
    report = BuildReport.model_validate(job.result)
    assert time.monotonic() - t > 5  # the analysis alone lasted longer than the stall limit
    assert any(m.startswith("analysing the request (") and " tokens in " in m for m in seen), seen

    # The code question carried the resource template, the prompt and the test environment.
    question = fake_openai.requests[1]["messages"][-1]["content"]
    assert '"uri": "http-status://{code}"' in question and '"name": "explain_status"' in question
    assert "Network: off" in question and "in the order of cases.json" in question
    # Turn 1 forgot the template: blocked before running, and told so; turn 2 defined it and passed.
    first, second = report.turns
    assert first.outcome == "blocked" and first.validation is None
    assert any("requested resources not defined: http-status://{code}" in f.message for f in first.failures)
    assert second.outcome == "passed"

    deployed = Path(report.deployment.directory)
    validation = json.loads((deployed / "manifest.json").read_text())["validation"]
    resources = {r["uri"]: r for r in validation["resources"]}
    assert resources["http-status://{code}"]["template"] is True
    passed = {(c.get("resource") or c.get("prompt") or c["tool"]): c["passed"] for c in validation["cases"]}
    assert passed["http-status://418"] and passed["http-status://299"] and passed["explain_status"]
    assert passed["http-status://404"]  # the caller's resource example, enforced like any example
    assert caller in json.loads((deployed / "cases.json").read_text())["cases"]

    entry = report.deployment.client_config["mcpServers"]["http_status"]
    async with Client(StdioServerParameters(command=entry["command"], args=entry["args"]),
                      read_timeout_seconds=60) as client:
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == ["http-status://{code}"]
        read = await client.read_resource("http-status://200")
        assert read.contents[0].text == "200 OK"
