"""Reuse acceptance, measured through request_build over MCP stdio: labelled English and Chinese requests.

One data directory for the module: the starter library seeded by `mcp-foundry library seed`
(each starter validated in the sandbox), plus a roman numerals server built in the test by a
scripted model at the wire. Then, with no model configured, every request of the held-out
'test' half of tests/fixtures/reuse/sets.json goes through request_build as a real job:
paraphrases of stored servers must be reused (by the right server), requests nothing covers
must not be. The thresholds were calibrated on the 'dev' half only (bench/bench_reuse.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "builder")]
from fake_openai import FakeOpenAI  # noqa: E402
from fake_web import FakeWeb  # noqa: E402

from tests.proctree import stop_workers  # noqa: E402
from tests.server.conftest import FOUNDRY, foundry_env, result_of, stdio_foundry  # noqa: E402

SETS = json.loads((ROOT / "tests/fixtures/reuse/sets.json").read_text())["test"]
ROMAN_DIR = ROOT / "tests/fixtures/reuse/roman_numerals"
ROMAN_REQUEST = "convert integers to Roman numerals and Roman numerals back to integers"
ROMAN_REQUIREMENT = {
    "server_name": "roman_numerals", "category": "text",
    "summary": "Write an integer as a Roman numeral and read a Roman numeral back as an integer.",
    "tools": [{"name": "int_to_roman", "description": "Write an integer (1..3999) as a Roman numeral.",
               "params": [{"name": "number", "type": "integer"}], "returns": "the numeral",
               "examples": [{"arguments": {"number": 2024}, "expected": "MMXXIV"}]},
              {"name": "roman_to_int", "description": "Read a Roman numeral and return its integer value.",
               "params": [{"name": "numeral", "type": "string"}], "returns": "the integer",
               "examples": [{"arguments": {"numeral": "MCMXC"}, "expected": 1990}]}],
}


def roman_analysis(body: dict) -> str:
    """The analyst's answer: with candidates shown, 'none covers it' plus the requirement; else the requirement."""
    if "Before you write a requirement" in body["messages"][-1]["content"]:
        return json.dumps({"reuse": {"case_id": None, "mapping": [], "reason": "no stored server reads Roman numerals"},
                           "requirement": ROMAN_REQUIREMENT})
    return json.dumps(ROMAN_REQUIREMENT)


def roman_draft() -> str:
    files = {p.name: p.read_text() for p in ROMAN_DIR.iterdir() if p.is_file()}
    files.update({"README.md": "# roman_numerals\n", "Dockerfile": "FROM python:3.11-slim\n"})
    return json.dumps({"files": files})


async def build(client, description: str, wait_s: float = 240, **args) -> dict:
    """request_build, then build_result (50 s at most per request) until it is final; the job's final view."""
    ticket = await client.call_tool("request_build", {"description": description, **args})
    assert not ticket.is_error, ticket.content
    return await result_of(client, ticket.structured_content["job_id"], timeout=wait_s)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A data dir holding the seeded starters and a roman numerals server built through request_build."""
    data = tmp_path_factory.mktemp("reuse-data")
    seed = subprocess.run([*FOUNDRY, "library", "seed"], env=foundry_env(data), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert seed.returncode == 0, seed.stdout + seed.stderr
    stop_workers(data)  # the seed's worker has no model configured; the build below needs the scripted one
    llm, web = FakeOpenAI().start(), FakeWeb().start()
    web.add_package("mcp", {"1.0.0": "2024-11-25T00:00:00Z", "2.3.0": "2026-06-01T00:00:00Z"}, summary="MCP SDK")
    llm.script([roman_analysis, roman_draft()])
    extra = {"MCP_FOUNDRY_LLM_PROVIDER": "openai", "MCP_FOUNDRY_LLM_BASE_URL": llm.base_url,
             "MCP_FOUNDRY_LLM_MODEL": "fake-model", "MCP_FOUNDRY_PYPI_URL": web.url,
             "MCP_FOUNDRY_GITHUB_API_URL": web.url}

    async def main() -> dict:
        async with stdio_foundry(data, **extra) as client:
            return await build(client, ROMAN_REQUEST)

    try:
        roman = anyio.run(main)
    finally:
        llm.stop()
        web.stop()
    assert roman["state"] == "succeeded" and roman["result"]["outcome"] == "built", roman
    stop_workers(data)  # that session's worker knows the scripted model, now gone: the checks below have none
    return data


@pytest.fixture(scope="module")
def outcomes(repo) -> dict[str, dict]:
    """Every labelled request of the test half, built with no model: request -> build report."""
    requests = [r for r, _ in SETS["covered"]] + [r for r, _ in SETS["uncovered"]]

    async def main() -> dict[str, dict]:
        out: dict[str, dict] = {}
        async with stdio_foundry(repo, MCP_FOUNDRY_MAX_JOBS="2") as client:
            async def one(request: str) -> None:
                # coder "server" with none configured: no model at all (with "auto" the caller would be asked)
                out[request] = (await build(client, request, coder="server"))["result"]

            async with anyio.create_task_group() as tg:
                for request in requests:
                    tg.start_soon(one, request)
        return out

    return anyio.run(main)


def reused_server(report: dict) -> str | None:
    """The reused case's server name ('_' as '-': the built server is roman_numerals, the label roman-numerals)."""
    chosen = [c for c in report.get("candidates", []) if c["reused"]]
    return chosen[0]["server_name"].replace("_", "-") if report["outcome"] == "reused" and chosen else None


def test_paraphrases_in_english_and_chinese_are_reused_by_the_right_server(outcomes, capsys):
    assert len(SETS["covered"]) >= 30
    right = [r for r, want in SETS["covered"] if reused_server(outcomes[r]) == want]
    wrong = [(r, reused_server(outcomes[r])) for r, want in SETS["covered"]
             if reused_server(outcomes[r]) not in (None, want)]
    with capsys.disabled():
        print(f"\nno model: paraphrases reused by the right server {len(right)}/{len(SETS['covered'])} = "
              f"{len(right) / len(SETS['covered']):.2f}; by a wrong one: {wrong}")
    assert len(right) / len(SETS["covered"]) >= 0.7
    assert not wrong
    report = outcomes[right[0]]
    assert report["reuse"].startswith("meaning") and report["usage"]["calls"] == 0
    assert report["deployment"] and report["validation"]["verdict"] == "pass"  # re-validated, then deployed


def test_requests_nothing_covers_are_not_reused_and_say_why(repo, outcomes, capsys):
    assert len(SETS["uncovered"]) >= 20
    wrongly = [(r, reused_server(outcomes[r])) for r, _ in SETS["uncovered"] if outcomes[r]["outcome"] == "reused"]
    with capsys.disabled():
        print(f"\nno model: requests nothing covers wrongly reused {len(wrongly)}/{len(SETS['uncovered'])} = "
              f"{len(wrongly) / len(SETS['uncovered']):.2f}: {wrongly}")
    assert len(wrongly) / len(SETS["uncovered"]) <= 0.05
    refused = outcomes["convert HTML into Markdown"]
    assert refused["outcome"] == "failed" and "MCP_FOUNDRY_LLM_BASE_URL" in refused["error"]
    # The no-LLM message stays true: it says which stored server was closest and why it was not reused.
    assert "markdown-html, was not reused: the request converts html to markdown" in refused["error"]
    assert all(c["why"] for c in refused["candidates"])

    # With coder "auto" (the default) and no model, a request nothing covers asks its caller instead of failing.
    async def asked() -> tuple[dict, dict]:
        async with stdio_foundry(repo) as client:
            ticket = await client.call_tool("request_build", {"description": "convert HTML into Markdown"})
            job_id = ticket.structured_content["job_id"]
            with anyio.fail_after(120):
                while (status := (await client.call_tool("build_status", {"job_id": job_id})).structured_content
                       )["state"] != "waiting":
                    assert status["state"] in ("queued", "running"), status
                    await anyio.sleep(0.2)
            cancelled = (await client.call_tool("cancel_build", {"job_id": job_id})).structured_content
            return status, cancelled

    status, cancelled = anyio.run(asked)
    assert status["question"]["kind"] == "requirement" and status["phase"] == "awaiting_client"
    assert "convert HTML into Markdown" in status["question"]["instructions"]
    assert "markdown-html" in status["question"]["instructions"]  # the analyst's question shows the candidates
    assert cancelled["state"] == "cancelled"


def test_reuse_is_counted_and_a_false_reuse_can_be_reported(repo, outcomes):
    reused = [r for r, _ in SETS["covered"] if outcomes[r]["outcome"] == "reused"]
    request, report = reused[0], outcomes[reused[0]]
    other: dict[str, str] = {}

    async def main() -> tuple[dict, dict, dict, dict]:
        async with stdio_foundry(repo) as client:
            jobs = (await client.call_tool("list_builds", {"kind": "build", "limit": 500})).structured_content["jobs"]
            before = json.loads((await client.read_resource("foundry://repository/stats")).contents[0].text)
            ticket = next(j for j in jobs if j["state"] == "succeeded")
            bad = await client.call_tool("report_false_reuse", {"job_id": "no-such-build", "reason": "it is wrong"})
            assert bad.is_error and "not served from the repository" in bad.content[0].text
            # Report the reuse of `request`: find its job by its result.
            for j in jobs:
                res = (await client.call_tool("build_result", {"job_id": j["job_id"]})).structured_content
                if res["result"] and res["result"]["request"] == request:
                    ticket = j
                elif res["result"] and res["result"]["request"] == reused[1]:
                    other["job_id"] = j["job_id"]
            flagged = await client.call_tool("report_false_reuse", {"job_id": ticket["job_id"],
                                                                   "reason": "it does not do what I asked"})
            assert not flagged.is_error, flagged.content
            again = await build(client, request, coder="server")
            after = json.loads((await client.read_resource("foundry://repository/stats")).contents[0].text)
            return before, flagged.structured_content, again, after

    before, flagged, again, after = anyio.run(main)
    covered = len(SETS["covered"])
    assert before["builds"] >= covered + len(SETS["uncovered"]) and before["reused"] >= 0.7 * covered
    assert before["reuse_rate"] == round(before["reused"] / before["builds"], 4)
    assert before["by_how"].get("meaning", 0) >= 0.7 * covered
    top = before["hits_by_case"][0]
    assert top["hits"] >= 1 and top["server_name"] and top["false_reports"] == 0
    assert flagged["case_id"] == report["reused_case_id"]
    # The same request is never served from that case again.
    assert again["result"]["outcome"] != "reused" or again["result"]["reused_case_id"] != flagged["case_id"]
    assert any("reported as a false reuse" in c["why"] for c in again["result"]["candidates"])
    assert after["false_reuse_reports"] == 1 and after["reports"][0]["case_id"] == flagged["case_id"]
    assert next(h for h in after["hits_by_case"] if h["case_id"] == flagged["case_id"])["false_reports"] == 1

    flag = subprocess.run([*FOUNDRY, "library", "flag", other["job_id"], "--reason", "not what I asked"],
                          env=foundry_env(repo), cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert flag.returncode == 0 and f"build {other['job_id']} was served from" in flag.stdout, flag.stderr
    cli = subprocess.run([*FOUNDRY, "library", "stats"], env=foundry_env(repo), cwd=str(ROOT), capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "reuse rate" in cli.stdout and "false-reuse reports 2" in cli.stdout, cli.stderr
    unflaggable = subprocess.run([*FOUNDRY, "library", "flag", "nosuchjob", "--reason", "x y z"], env=foundry_env(repo),
                                 cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert unflaggable.returncode == 2 and "not served from the repository" in unflaggable.stderr


def test_fresh_skips_the_repository_and_says_so(repo):
    request = SETS["covered"][0][0]

    async def main() -> dict:
        async with stdio_foundry(repo) as client:
            return await build(client, request, fresh=True, coder="server")

    out = anyio.run(main)
    assert out["state"] == "failed" and out["result"]["fresh"] and out["result"]["candidates"] == []
    assert "fresh=true" in out["error"]
