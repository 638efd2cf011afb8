"""Acceptance tests of the build pipeline: real sandbox, real LanceDB, a scripted OpenAI-compatible endpoint.

Builds are queued through a Foundry's queue and run by its JobRunner in this process; the LLM
and PyPI are the only fakes, and they sit at the wire (local HTTP servers).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import anyio
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from builder.config import Settings
from builder.jobs import JobState
from builder.params import build_params
from builder.report import BuildReport
from builder.service import Foundry
from tests.proctree import sandboxed

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
REQUEST = "word and character statistics of a text"
LLM_SECONDS = 2.0
"""Latency of each scripted completion in the reuse-ratio test, so the ratio measures the generation avoided."""

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


def thinking(reply, seconds: float = LLM_SECONDS):
    """A scripted reply that takes `seconds`, as a real model does (far less than one writing a server really takes)."""
    def answer(body: dict) -> str:
        time.sleep(seconds)
        return reply(body) if callable(reply) else reply
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
    async with foundry.runner():
        job = foundry.queue.submit("build", params)
        job = await foundry.queue.wait(job.id, wait_s)
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
    llm_env.script([thinking(json.dumps(REQUIREMENT)), thinking(BUGGY),
                    thinking(expect_feedback("[assertion]", FIXED))])
    state, report, first_s = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, report.render()
    assert report.outcome == "built" and [t.outcome for t in report.turns] == ["failed", "passed"]
    assert report.coder == "openai"
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
    print(report.render(), again.render(), sep="\n")
    # The speed of the repeat is a figure for bench/bench_builder.py, not a timed assertion: here it swung from
    # 3x to 15x with the machine's load and with whether an earlier test had already loaded the embedding model.
    print(f"first build {first_s:.2f} s, exact repeat {second_s:.2f} s, ratio {first_s / second_s:.1f}x")


@pytest.mark.anyio
async def test_a_package_missing_from_pypi_is_caught_by_vetting_and_healed(foundry, llm_env, web):
    bogus = "textstats-wordcount-pro"
    llm_env.script([json.dumps(REQUIREMENT), draft(requirements=f"mcp==2.3.0\n{bogus}==1.0.0\n"),
                    expect_feedback(f"{bogus}: does NOT exist on PyPI", FIXED)])
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, report.render()
    first, second = report.turns
    assert first.outcome == "blocked" and first.validation is None  # nothing ran
    missing = [f for f in first.findings if f.stage == "vet" and f.blocking]
    assert [f.where for f in missing] == [bogus] and "[missing]" in missing[0].message
    # Nothing imports it: the fitting strategy removes it (pinning it anew would not help).
    assert (first.heal.error_class, first.heal.kind, first.heal.strategy) == (
        "dependency", "unused-package", "remove-unused-dependency")
    assert second.outcome == "passed" and report.heal_attempts[0].outcome == "fixed"
    assert web.count(f"/pypi/{bogus}/json") == 1
    assert foundry.knowledge.failures("dependency")[0].strategy == first.heal.strategy


@pytest.mark.anyio
async def test_malformed_analysis_is_re_asked_and_the_build_succeeds(foundry, llm_env):
    llm_env.script(["Sure! Here is the requirement: server text_stats, one tool.", json.dumps(REQUIREMENT), FIXED])
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, report.render()
    assert llm_env.calls == 3 and len(report.turns) == 1
    assert "not valid" in last_user_message(llm_env.requests[1])  # the re-ask carried the error


@pytest.mark.anyio
async def test_an_llm_that_keeps_failing_ends_the_build_failed_with_nothing_deployed(foundry, llm_env):
    llm_env.script(["no json here"] * 3)
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.failed and report.outcome == "failed"
    assert "LLM kept failing" in report.error and "Requirement" in report.error
    assert report.deployment is None and not any(foundry.settings.servers_dir.iterdir())
    rows = foundry.knowledge.failures("llm")
    assert len(rows) == 1 and rows[0].outcome == "not_fixed"
    assert not (foundry.settings.work_dir / "build-x").exists() and not any(foundry.settings.work_dir.iterdir())


@pytest.mark.anyio
async def test_cancelling_mid_build_stops_the_sandbox_and_deploys_nothing(foundry, llm_env):
    slow = json.loads(FIXED)
    slow["files"]["server.py"] = slow["files"]["server.py"].replace(
        "    if len(text) > MAX_CHARS:", "    import time\n    time.sleep(60)\n    if len(text) > MAX_CHARS:")
    llm_env.script([json.dumps(REQUIREMENT), json.dumps(slow)])
    async with foundry.runner():
        job = foundry.queue.submit("build", build_params(REQUEST))
        running: set[int] = set()
        with anyio.fail_after(60):
            while not running:  # wait until the server under test is up and being called
                await anyio.sleep(0.2)
                if any("PASS prompts/list" in line for line in foundry.store.log(job.id)):  # cases come next
                    running = sandboxed(os.getpid())
        job = await foundry.queue.cancel(job.id)
        assert job.state == JobState.cancelled  # returned only once the build has unwound:
        assert not any(foundry.settings.servers_dir.iterdir())
        assert not (foundry.settings.work_dir / f"build-{job.id}").exists()
    with anyio.fail_after(10):
        while running & sandboxed(os.getpid()):
            await anyio.sleep(0.1)
    assert not any(foundry.settings.servers_dir.iterdir())
    assert not (foundry.settings.work_dir / f"build-{job.id}").exists()


@pytest.mark.anyio
async def test_without_a_provider_code_generation_fails_at_once_but_reuse_still_works(foundry, monkeypatch):
    """coder "server" with no endpoint fails at once; a covered request (coder "auto") is reused without a question."""
    for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_BASE_URL", "MCP_FOUNDRY_LLM_PROVIDER",
                "MCP_FOUNDRY_LLM_CASSETTE"):
        monkeypatch.delenv(var, raising=False)
    state, report, seconds = await run_build(foundry, build_params("convert a temperature between units",
                                                                   coder="server"))
    assert state == JobState.failed and "MCP_FOUNDRY_LLM_BASE_URL" in report.error and "answer_build" in report.error
    assert seconds < 10 and report.turns == []

    from knowledge.models import SuccessCase, ToolInfo
    files = json.loads(FIXED)["files"]
    foundry.knowledge.add_case(SuccessCase(request_text=REQUEST, server_name="text_stats", files=files,
                                           tools=[ToolInfo(name="text_stats")], dependencies=["mcp==2.3.0"]))
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded and report.outcome == "reused", report.render()
    assert report.deployment.name == "text_stats" and report.coder == ""  # no model and no client was asked
    # A name decides where the server goes, not what it does: still an exact repeat, still no LLM needed.
    state, report, _ = await run_build(foundry, build_params(REQUEST, name="my_words"))
    assert state == JobState.succeeded and report.reuse == "exact", report.render()
    assert report.deployment.name == "my_words"
    # A request that names its tools, covered by a stored case, is reused before the client is asked anything.
    state, report, _ = await run_build(foundry, build_params(REQUEST, tools=["text_stats"]), wait_s=60)
    assert state == JobState.succeeded and report.reuse.startswith("tools"), report.render()
    assert foundry.store._read("SELECT COUNT(*) AS n FROM questions")[0]["n"] == 0


def _own_cases_only(count: str) -> str:
    """A draft whose own cases.json agrees with its bug: it tests only the error path."""
    files = json.loads(draft(count=count))["files"]
    files["cases.json"] = json.dumps({"cases": [CASES["cases"][1]]})
    return json.dumps({"files": files})


@pytest.mark.anyio
async def test_the_callers_examples_are_enforced_on_every_draft(foundry, llm_env):
    buggy = _own_cases_only('len(text.replace(" ", ""))')  # passes its own cases, not the caller's example
    llm_env.script([json.dumps(REQUIREMENT), buggy, expect_feedback("characters", _own_cases_only("len(text)"))])
    example = {"tool": "text_stats", "arguments": {"text": "a b"}, "expect": {"equals": {"words": 2, "characters": 3,
                                                                                       "lines": 1}}}
    state, report, _ = await run_build(foundry, build_params(REQUEST + " (examples enforced)", examples=[example]))
    assert state == JobState.succeeded, report.error
    assert [t.outcome for t in report.turns] == ["failed", "passed"]
    assert report.turns[0].failures[0].error_class == "assertion"
    deployed = json.loads((Path(report.deployment.directory) / "cases.json").read_text())
    assert example in deployed["cases"]  # the deployed server carries the caller's contract


def test_malformed_examples_are_refused_naming_the_field():
    from builder.errors import InputError

    with pytest.raises(InputError) as e:
        build_params(REQUEST, examples=[{"tool": "t", "arguments": {}, "expect": {"equalz": 1}}])
    assert e.value.field == "examples" and "equalz" in str(e.value)


@pytest.mark.anyio
async def test_reuse_enforces_the_callers_examples(foundry, monkeypatch):
    for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_BASE_URL", "MCP_FOUNDRY_LLM_PROVIDER",
                "MCP_FOUNDRY_LLM_CASSETTE"):
        monkeypatch.delenv(var, raising=False)
    from knowledge.models import SuccessCase, ToolInfo
    foundry.knowledge.add_case(SuccessCase(request_text=REQUEST, server_name="text_stats",
                                           files=json.loads(FIXED)["files"], tools=[ToolInfo(name="text_stats")],
                                           dependencies=["mcp==2.3.0"]))
    unmet = {"tool": "text_stats", "arguments": {"text": "a b"}, "expect": {"equals": {"words": 2, "characters": 2,
                                                                                      "lines": 1}}}
    state, report, _ = await run_build(foundry, build_params(REQUEST, tools=["text_stats"], examples=[unmet],
                                                             coder="server"))
    assert state == JobState.failed and report.outcome == "failed", report.render()
    assert any("failed re-validation" in n for n in report.notes)  # the stored case breaks the caller's contract
    assert not any(foundry.settings.servers_dir.iterdir())

    met = {**unmet, "expect": {"equals": {"words": 2, "characters": 3, "lines": 1}}}
    state, report, _ = await run_build(foundry, build_params(REQUEST, name="my_stats", tools=["text_stats"],
                                                             examples=[met], coder="server"))
    assert state == JobState.succeeded and report.outcome == "reused", report.render()
    assert report.deployment.name == "my_stats"  # the caller's name wins over the stored case's
    deployed = json.loads((Path(report.deployment.directory) / "cases.json").read_text())
    assert met in deployed["cases"]  # deployed with the caller's contract, as a built server is


@pytest.mark.anyio
async def test_a_strategy_chosen_after_the_last_turn_is_not_recorded_as_tried(foundry, llm_env):
    llm_env.script([json.dumps(REQUIREMENT), BUGGY, BUGGY, BUGGY])  # max_turns=3, never fixed
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.failed and len(report.turns) == 3, report.render()
    assert [a.outcome for a in report.heal_attempts] == ["not_fixed", "not_fixed", "pending"]  # the last never ran
    rows = foundry.knowledge.failures("assertion")
    # Two strategies were applied and failed; the failure that ended the build is recorded without a strategy.
    assert [(r.strategy, r.outcome) for r in rows] == [("targeted-fix", "not_fixed"), ("rewrite-tool", "not_fixed"),
                                                       ("none", "not_fixed")]


@pytest.mark.anyio
async def test_a_class_hidden_by_an_earlier_stage_failure_is_not_counted_fixed(foundry, llm_env):
    broken = json.loads(BUGGY)
    broken["files"]["server.py"] = broken["files"]["server.py"].replace("def text_stats(", "def text_stats((")
    llm_env.script([json.dumps(REQUIREMENT), BUGGY, json.dumps(broken), FIXED])
    state, report, _ = await run_build(foundry, build_params(REQUEST))
    assert state == JobState.succeeded, report.render()
    assert [t.outcome for t in report.turns] == ["failed", "blocked", "passed"]
    # Turn 2 never ran its cases, so the assertion strategy of turn 1 did not show that it fixed anything.
    assert [(a.error_class, a.outcome) for a in report.heal_attempts] == [("assertion", "not_fixed"),
                                                                          ("syntax", "fixed")]


@pytest.mark.anyio
async def test_an_llm_failing_in_a_later_turn_keeps_the_earlier_turns_and_their_healing(foundry, llm_env):
    llm_env.script([json.dumps(REQUIREMENT), BUGGY, "no json here", "still no json"])
    state, report, _ = await run_build(foundry, build_params(REQUEST + " (later failure)"))
    assert state == JobState.failed and "LLM kept failing in turn 2" in report.error
    assert [t.outcome for t in report.turns] == ["failed"]
    assert [a.error_class for a in report.heal_attempts] == ["assertion"]
    assert len(foundry.knowledge.failures("llm")) == 1
    assert report.deployment is None and not any(foundry.settings.servers_dir.iterdir())


def test_a_build_timeout_too_short_for_one_turn_is_refused():
    from builder.errors import InputError

    with pytest.raises(InputError) as e:
        build_params(REQUEST, timeout_s=30)
    assert e.value.field == "timeout_s" and "60 to 86400" in str(e.value)
