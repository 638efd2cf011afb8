"""The calling agent is the model: with no LLM configured, a build asks its client, over real stdio, with the real
worker and the real sandbox; the test answers as an agent would (answer_build), or from a shell (`mcp-foundry answer`).

Only PyPI is a fake at the wire (for the Reason stage's dependency vetting); no model endpoint exists at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "builder")]
from fake_web import FakeWeb  # noqa: E402

from tests.server.conftest import FOUNDRY, foundry_env, result_of  # noqa: E402
from tests.server.gateway_helpers import serve  # noqa: E402

REQUEST = "two tools: shout a text in capitals, and whisper it in lower case"
REQUIREMENT = {
    "server_name": "voices", "summary": "Shouts or whispers a text.", "category": "text",
    "tools": [
        {"name": "shout", "description": "Upper-case a text.", "params": [{"name": "text", "type": "string"}],
         "returns": "the text in capitals", "examples": [{"arguments": {"text": "hi"}, "expect": {"equals": "HI"}}]},
        {"name": "whisper", "description": "Lower-case a text.", "params": [{"name": "text", "type": "string"}],
         "returns": "the text in lower case", "examples": [{"arguments": {"text": "HI"}, "expect": {"equals": "hi"}}]},
    ],
}
SERVER = '''"""Shouts or whispers a text."""
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

NOISE
mcp = MCPServer("voices")
PURE = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


@mcp.tool(annotations=PURE)
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@mcp.tool(annotations=PURE)
def whisper(text: str) -> str:
    """Lower-case a text."""
    return text.lower()


if __name__ == "__main__":
    mcp.run()
'''
CASES = {"cases": [{"tool": "shout", "arguments": {"text": "hi"}, "expect": {"equals": "HI"}},
                   {"tool": "whisper", "arguments": {"text": "HI"}, "expect": {"equals": "hi"}}]}


def draft(noise: str = "") -> dict:
    """The agent's answer to a code question: every file of the server (`noise`: a line run at import)."""
    return {"files": {"server.py": SERVER.replace("NOISE", noise), "requirements.txt": "mcp==2.3.0\n",
                      "cases.json": json.dumps(CASES), "README.md": "# voices\nShouts or whispers.\n",
                      "Dockerfile": "FROM python:3.11-slim\n"}}


NOISY = draft('print("loading voices...")')  # a stray line on stdout: it breaks the protocol channel
FIXED = draft()


@pytest.fixture
def web():
    server = FakeWeb().start()
    server.add_package("mcp", {"1.0.0": "2024-11-25T00:00:00Z", "2.3.0": "2026-06-01T00:00:00Z"}, summary="MCP SDK")
    yield server
    server.stop()


def no_model(data_dir: Path, web: FakeWeb, **extra: str) -> dict[str, str]:
    """The foundry's environment with no model configured anywhere (the worker inherits it)."""
    env = foundry_env(data_dir, MCP_FOUNDRY_PYPI_URL=web.url, MCP_FOUNDRY_GITHUB_API_URL=web.url, **extra)
    return {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}


async def question_of(client, job_id: str, *, after: str | None = None) -> dict:
    """build_result until it stops at a question (newer than `after`); it never holds a request past 50 s."""
    with anyio.fail_after(240):
        while True:
            res = await client.call_tool("build_result", {"job_id": job_id, "wait_s": 45})
            assert not res.is_error, res.content
            out = res.structured_content
            assert not out["final"], out
            if out["question"] and out["question"]["id"] != after:
                assert out["next"].startswith(f"answer_build(job_id='{job_id}', question_id='{out['question']['id']}'")
                return out["question"]


async def answered(client, job_id: str, question: dict, value) -> dict:
    res = await client.call_tool("answer_build", {"job_id": job_id, "question_id": question["id"], "answer": value})
    assert not res.is_error, res.content
    return res.structured_content


def test_an_agent_answers_a_build_across_two_sessions_and_uses_the_server_it_built(data_dir, web):
    env = no_model(data_dir, web)

    async def first_session() -> str:
        async with serve(data_dir, **{k: v for k, v in env.items() if k.startswith("MCP_FOUNDRY_")}) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert "answer_build" in tools and "answer_build" in tools["request_build"].description
            ticket = await client.call_tool("request_build", {"description": REQUEST})
            assert not ticket.is_error, ticket.content
            job_id = ticket.structured_content["job_id"]
            q = await question_of(client, job_id)
            assert q["kind"] == "requirement" and q["turn"] is None and REQUEST in q["instructions"]
            assert "server_name" in q["answer_schema"]["properties"]
            status = (await client.call_tool("build_status", {"job_id": job_id})).structured_content
            assert (status["state"], status["phase"], status["question"]["id"]) == ("waiting", "awaiting_client",
                                                                                   q["id"])
            after = await answered(client, job_id, q, REQUIREMENT)
            assert after["state"] in ("running", "waiting") and (after["question"] or {}).get("id") != q["id"]
            return job_id
        # The session ends here, with the build still going: it is the worker's.

    async def second_session() -> dict:
        async with serve(data_dir, **{k: v for k, v in env.items() if k.startswith("MCP_FOUNDRY_")}) as client:
            code = await question_of(client, job_id)
            assert (code["kind"], code["turn"], code["turns_left"]) == ("code", 1, 4)
            assert "whisper" in code["instructions"] and "files" in code["answer_schema"]["properties"]
            await answered(client, job_id, code, json.dumps(NOISY))  # as JSON text, as agents often send it
            fix = await question_of(client, job_id, after=code["id"])
            assert (fix["kind"], fix["turn"], fix["turns_left"]) == ("fix", 2, 3)
            # The Reason stage caught the print before anything ran; the fix question names it.
            assert "- [protocol] server.py:5: print() writes to stdout, which carries the MCP protocol" \
                in fix["instructions"]
            await answered(client, job_id, fix, FIXED)
            out = await result_of(client, job_id)
            assert out["state"] == "succeeded", out
            # The server it built is served in this very session, through the gateway.
            with anyio.fail_after(30):
                while "voices__whisper" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.2)
            via_gateway = await client.call_tool("voices__whisper", {"text": "QUIET PLEASE"})
            assert not via_gateway.is_error and via_gateway.content[0].text == "quiet please"
            return out["result"]

    job_id = anyio.run(first_session)
    result = anyio.run(second_session)
    assert result["outcome"] == "built" and result["coder"] == "client" and result["usage"]["calls"] == 3
    assert [t["outcome"] for t in result["turns"]] == ["blocked", "passed"]
    assert result["turns"][0]["failures"][0]["error_class"] == "protocol"

    async def from_client_config() -> str:
        entry = result["deployment"]["client_config"]["mcpServers"]["voices"]
        assert entry["args"][-2:] == ["run", "voices"]  # `mcp-foundry run voices`: sandboxed, as the gateway runs it
        async with Client(StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"))) \
                as client:
            res = await client.call_tool("shout", {"text": "it works"})
        assert not res.is_error, res.content
        return res.content[0].text

    assert anyio.run(from_client_config) == "IT WORKS"


def test_bad_answers_are_refused_clearly_and_change_nothing_and_a_waiting_build_is_cancelled(data_dir, web):
    env = no_model(data_dir, web)

    async def main() -> None:
        async with serve(data_dir, **{k: v for k, v in env.items() if k.startswith("MCP_FOUNDRY_")}) as client:
            async def answer(job_id: str, question_id: str, value) -> str:
                res = await client.call_tool("answer_build", {"job_id": job_id, "question_id": question_id,
                                                              "answer": value})
                assert res.is_error, res.structured_content
                return res.content[0].text

            async def status(job_id: str) -> dict:
                return (await client.call_tool("build_status", {"job_id": job_id})).structured_content

            job_id = (await client.call_tool("request_build", {"description": REQUEST})).structured_content["job_id"]
            q = await question_of(client, job_id)

            text = await answer(job_id, q["id"], '{"server_name": "voices", ')
            assert text.startswith(f"answer_build: answer: not a valid answer to requirement question {q['id']}")
            assert "is not valid JSON" in text and "invalid answer 1 of at most 3; the question stays open" in text
            text = await answer(job_id, q["id"], {"server_name": "Voices!", "tools": "shout"})
            problems = [line for line in text.splitlines() if line.startswith("- ")]
            assert "- server_name: 'Voices!' does not match '^[a-z][a-z0-9_]{0,63}$'" in problems, problems
            assert "- tools: 'shout' is not of type 'array'" in problems, problems
            assert "- (root): 'summary' is a required property" in problems, problems
            text = await answer(job_id, "nosuchquestion", REQUIREMENT)
            assert text == (f"answer_build: question_id: job {job_id} has no question 'nosuchquestion' (accepted: "
                            f"the id of its open question, {q['id']} (requirement))")
            now = await status(job_id)
            assert (now["state"], now["question"]["id"], now["question"]["invalid_answers"]) == ("waiting", q["id"], 2)

            text = await answer(job_id, q["id"], {**REQUIREMENT, "tools": REQUIREMENT["tools"][:1] * 2})
            assert "tool names must be unique" in text and "invalid answer 3 of 3: the question is given up" in text
            out = await result_of(client, job_id)
            assert out["state"] == "failed" and "the client gave no valid Requirement in 3 answer(s)" in out["error"]
            text = await answer(job_id, q["id"], REQUIREMENT)
            assert text == (f"answer_build: job_id: job {job_id} is failed; it waits for no answer (accepted: a job "
                            "whose build_status reads waiting and shows a question)")

            other = (await client.call_tool("request_build", {"description": REQUEST + " (again)", "coder": "client"}))
            other_id = other.structured_content["job_id"]
            await question_of(client, other_id)
            cancelled = (await client.call_tool("cancel_build", {"job_id": other_id})).structured_content
            assert cancelled["state"] == "cancelled" and cancelled["question"] is None

    anyio.run(main)


def test_a_script_answers_a_build_over_rest_and_bad_answers_are_refused_there_too(data_dir, web):
    import httpx

    from tests.server.conftest import start_http, stop

    env = no_model(data_dir, web)
    proc, base = start_http(data_dir, **{k: v for k, v in env.items() if k.startswith("MCP_FOUNDRY_")})
    try:
        ticket = httpx.post(f"{base}/api/v1/build", json={"description": REQUEST, "coder": "client"}, timeout=30)
        assert ticket.status_code == 202, ticket.text
        job = ticket.json()["build_id"]

        def question(after: str | None = None) -> dict:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                status = httpx.get(f"{base}/api/v1/build/{job}/status", timeout=30).json()
                assert status["status"] in ("queued", "running", "waiting"), status
                q = status["question"]
                if status["status"] == "waiting" and q and q["id"] != after:
                    assert q["answer_with"].startswith(f"POST /api/v1/build/{job}/answer")
                    return q
                time.sleep(0.2)
            raise AssertionError(f"no question from {job} within 240 s")

        def answer(q: dict, value) -> httpx.Response:
            return httpx.post(f"{base}/api/v1/build/{job}/answer", json={"question_id": q["id"], "answer": value},
                              timeout=60)

        q = question()
        assert q["kind"] == "requirement" and REQUEST in q["instructions"]
        refused = answer(q, {"server_name": "Voices!", "tools": "shout"})
        assert refused.status_code == 422 and "invalid answer 1 of at most 3" in refused.json()["error"], refused.text
        assert "- tools: 'shout' is not of type 'array'" in refused.json()["error"]
        wrong_id = httpx.post(f"{base}/api/v1/build/{job}/answer", json={"question_id": "nosuch", "answer": {}})
        assert wrong_id.status_code == 422 and f"the id of its open question, {q['id']}" in wrong_id.json()["error"]
        not_json = httpx.post(f"{base}/api/v1/build/{job}/answer", content=b"[1, 2]",
                              headers={"content-type": "application/json"})
        assert not_json.status_code == 422 and "must be a JSON object" in not_json.json()["error"]
        unknown = httpx.post(f"{base}/api/v1/build/nosuchjob/answer", json={"question_id": q["id"], "answer": {}})
        assert unknown.status_code == 404
        again = httpx.get(f"{base}/api/v1/build/{job}/status").json()
        assert again["question"]["id"] == q["id"] and again["question"]["invalid_answers"] == 1  # still open

        taken = answer(q, REQUIREMENT)
        assert taken.status_code == 200 and (taken.json()["question"] or {}).get("id") != q["id"], taken.text
        code = question(after=q["id"])
        assert code["kind"] == "code" and "files" in code["answer_schema"]["properties"]
        assert answer(code, FIXED).status_code == 200
        deadline = time.monotonic() + 240
        while (result := httpx.get(f"{base}/api/v1/build/{job}/result", timeout=30)).status_code == 409:
            assert time.monotonic() < deadline, result.text
            time.sleep(0.3)
        body = result.json()
        assert body["success"] and body["report"]["outcome"] == "built" and body["report"]["coder"] == "client", body
        late = answer(code, FIXED)
        assert late.status_code == 409 and "succeeded, not waiting for an answer" in late.json()["error"]
    finally:
        stop(proc)


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FOUNDRY, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_the_cli_prints_the_question_answers_it_and_an_unanswered_question_expires(data_dir, web):
    env = no_model(data_dir, web, MCP_FOUNDRY_CLIENT_WAIT="10")
    built = _cli(env, "build", REQUEST)
    assert built.returncode == 3, built.stderr[-2000:]
    assert built.stdout.startswith("=== question ") and ": requirement ===" in built.stdout
    assert "=== system ===" in built.stdout and REQUEST in built.stdout and '"server_name"' in built.stdout
    job_id = built.stderr.split("job ", 1)[1].split()[0]
    question_id = built.stdout.split()[2]
    assert f"mcp-foundry answer {job_id} {question_id} ANSWER.json" in built.stderr
    assert f"mcp-foundry status {job_id}" in built.stderr

    refused = _cli(env, "answer", job_id, question_id, "-", stdin="[1, 2]")
    assert refused.returncode == 2 and "answer: not a valid answer to requirement question" in refused.stderr
    assert "the answer is a list, not a JSON object" in refused.stderr

    answer_file = data_dir / "requirement.json"
    answer_file.write_text(json.dumps(REQUIREMENT))
    code = _cli(env, "answer", job_id, question_id, str(answer_file))
    assert code.returncode == 3, code.stderr[-2000:]  # it followed the build to its next question
    assert ": code, turn 1, 4 more turn(s) after it ===" in code.stdout and "whisper" in code.stdout

    status = _cli(env, "status", job_id)
    assert f"job {job_id} (build): waiting, phase awaiting_client" in status.stdout
    assert ": code, turn 1" in status.stdout and "mcp-foundry answer" in status.stderr

    deadline = anyio.run(lambda: _until_final(env, job_id))
    assert "error: no answer came to code question" in deadline and "within 10 s (MCP_FOUNDRY_CLIENT_WAIT)" in deadline


async def _until_final(env: dict[str, str], job_id: str) -> str:
    with anyio.fail_after(60):
        while True:
            shown = _cli(env, "status", job_id).stdout
            if shown.startswith(f"job {job_id} (build): failed"):
                return shown
            await anyio.sleep(1)
