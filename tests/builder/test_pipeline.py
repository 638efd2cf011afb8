"""Acceptance tests of the build pipeline: real sandbox, real LanceDB, a scripted OpenAI-compatible endpoint.

Builds are driven through a Foundry and its JobRunner in-process; the LLM and PyPI are the
only fakes, and they sit at the wire (local HTTP servers).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder.config import Settings
from builder.jobs import JobState
from builder.pipeline import BuildReport, build_params
from builder.service import Foundry

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
REQUEST = "word and character statistics of a text"

REQUIREMENT = {
    "server_name": "text_stats", "summary": "Counts the words, characters and lines of a text.", "category": "text",
    "tools": [{"name": "text_stats", "description": "Count the words, characters and lines of a text.",
               "params": [{"name": "text", "type": "string", "description": "The text to measure."}],
               "returns": "an object with words, characters and lines",
               "examples": [{"arguments": {"text": "hello big world"},
                             "expected": {"words": 3, "characters": 15, "lines": 1}}]}],
    "dependencies": [], "constraints": [], "needs_network": False, "secrets": [],
}

SERVER = '''"""Word and character statistics of a text."""
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

MAX_CHARS = 1000
mcp = MCPServer("text_stats")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                      open_world_hint=False))
def text_stats(text: str) -> dict[str, int]:
    """Count the words, characters and lines of a text."""
    if len(text) > MAX_CHARS:
        raise ToolError(f"text has {len(text)} characters; pass at most {MAX_CHARS} (split it, add the counts)")
    return {"words": len(text.split()), "characters": COUNT, "lines": len(text.splitlines())}


if __name__ == "__main__":
    mcp.run()
'''
CASES = {"cases": [
    {"tool": "text_stats", "arguments": {"text": "hello big world"},
     "expect": {"equals": {"words": 3, "characters": 15, "lines": 1}}},
    {"tool": "text_stats", "arguments": {"text": "x" * 1001}, "expect": {"error": "at most 1000"}},
]}


def draft(count: str = "len(text)", requirements: str = "mcp==2.3.0\n") -> str:
    """A scripted Code reply: the files of the text statistics server, with `count` as the character count."""
    files = {"server.py": SERVER.replace("COUNT", count), "requirements.txt": requirements,
             "cases.json": json.dumps(CASES), "README.md": "# text_stats\nWord and character statistics.\n",
             "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\nWORKDIR /app\n"
                           "RUN pip install -r requirements.txt\nCMD [\"python\", \"server.py\"]\n"}
    return json.dumps({"files": files})


BUGGY = draft(count='len(text.replace(" ", ""))')  # forgets the spaces: the validator's case catches it
FIXED = draft()


def last_user_message(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def expect_feedback(marker: str, reply: str):
    """A scripted reply that is only given when the prompt carries `marker` (the healing feedback)."""
    def answer(body: dict) -> str:
        text = last_user_message(body)
        return reply if marker in text else json.dumps({"error": f"prompt lacked {marker!r}"})
    return answer


@pytest.fixture
def llm_env(fake_openai, monkeypatch):
    """Point the real provider configuration at the scripted endpoint."""
    for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_CASSETTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MCP_FOUNDRY_LLM_PROVIDER", "openai")
    monkeypatch.setenv("MCP_FOUNDRY_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("MCP_FOUNDRY_LLM_MODEL", "fake-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return fake_openai


@pytest.fixture
def web(fake_web):
    fake_web.add_package("mcp", {f"1.{i}.0": f"2025-0{1 + i % 9}-01T00:00:00Z" for i in range(9)} |
                         {"2.3.0": "2026-06-01T00:00:00Z"}, summary="Model Context Protocol SDK", requires_python=">=3.10")
    return fake_web


@pytest.fixture
def foundry(tmp_path, web):
    f = Foundry(Settings(data_dir=tmp_path / "data", env_cache_dir=ENV_CACHE, pypi_url=web.url,
                         github_api_url=web.url, max_turns=3))
    yield f
    f.store.close()


async def run_build(foundry: Foundry, params: dict, *, wait_s: float = 240) -> tuple[str, BuildReport, float]:
    t = time.monotonic()
    async with foundry.runner() as runner:
        job = runner.submit("build", params)
        job = await runner.wait(job.id, wait_s)
    assert job.final, f"build still {job.state} after {wait_s} s"
    assert job.result is not None, f"build ended {job.state} without a report: {job.error}"
    return job.state, BuildReport.model_validate(job.result), time.monotonic() - t


async def call_deployed(config: dict, name: str, tool: str, arguments: dict) -> dict:
    """Start a deployed server exactly as its client config says and call one tool over stdio."""
    entry = config["mcpServers"][name]
    params = StdioServerParameters(command=entry["command"], args=entry["args"])
    async with Client(params, read_timeout_seconds=60) as client:
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == [tool]
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return result.structured_content


@pytest.mark.anyio
async def test_second_turn_fixes_a_wrong_result_then_repeat_is_reused_without_llm(foundry, llm_env):
    llm_env.script([json.dumps(REQUIREMENT), BUGGY, expect_feedback("[assertion]", FIXED)])
    state, report, first_s = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, report.render()
    assert report.outcome == "built" and [t.outcome for t in report.turns] == ["failed", "passed"]
    turn1 = report.turns[0]
    assert turn1.validation and turn1.validation.verdict == "fail"
    assert [f.error_class for f in turn1.failures] == ["assertion"]
    assert turn1.heal and turn1.heal.error_class == "assertion"
    assert report.heal_attempts[0].outcome == "fixed"
    assert llm_env.calls == 3 and report.usage.calls == 3
    assert set(report.timings) >= {"analyze", "research", "loop", "deploy", "learn"}

    d = report.deployment
    manifest = json.loads((Path(d.directory) / "manifest.json").read_text())
    assert manifest["hashes"]["server.py"] and manifest["validation"]["verdict"] == "pass"
    assert d.command[0].startswith(d.directory)  # runs in the version's own environment
    stats = await call_deployed(d.client_config, "text_stats", "text_stats", {"text": "two words\nthree"})
    assert stats == {"words": 3, "characters": 15, "lines": 2}

    stored = foundry.knowledge.find_exact(REQUEST)
    assert stored is not None and stored.iterations == 2
    assert [r.outcome for r in foundry.knowledge.failures("assertion")] == ["fixed"]

    calls_before = llm_env.calls
    state, again, second_s = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, again.render()
    assert again.outcome == "reused" and again.reused_case_id == stored.id and again.reuse == "exact"
    assert llm_env.calls == calls_before and again.usage.calls == 0 and again.turns == []
    assert again.deployment.version == "2" and again.validation.verdict == "pass"
    print(f"first build {first_s:.2f} s, exact repeat {second_s:.2f} s, ratio {first_s / second_s:.1f}x")
    assert first_s >= 10 * second_s, f"repeat took {second_s:.2f} s against {first_s:.2f} s for the first build"
