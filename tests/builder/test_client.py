"""The client as the model: any complete_json call of a job becomes a stored question, answered through the store.

Jobs run in this process under a real JobRunner over a real SQLite store; answers go through
builder.llm.answers, the function behind answer_build and `mcp-foundry answer`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import anyio
import pytest

from builder.config import Settings
from builder.errors import InputError
from builder.jobs import JobContext, JobQueue, JobRunner, JobState, SqliteJobStore
from builder.llm import ChatMessage, Usage, complete_json
from builder.llm.answers import answer, record_answer
from builder.llm.client import ClientProvider, asking
from builder.params import build_params
from builder.requirement import Requirement
from builder.service import Foundry

REQUIREMENT = {
    "server_name": "text_stats", "summary": "Counts the words of a text.", "category": "text",
    "tools": [{"name": "word_count", "description": "Count the words of a text.",
               "params": [{"name": "text", "type": "string", "description": "The text."}],
               "returns": "the number of words", "examples": [{"arguments": {"text": "a b"}, "expect": {"equals": 2}}]}],
}


def asker(*, wait_s: float = 30.0, attempts: int = 3):
    """A job that asks its client for Requirements, `questions` times in a row, as a build step names its kind."""
    async def ask(ctx: JobContext) -> dict:
        provider = ClientProvider(ctx, wait_s=wait_s, poll_s=0.02)
        usage, names = Usage(), []
        for n in range(ctx.params.get("questions", 1)):
            with asking("analyst", turn=n + 1, turns_left=ctx.params.get("questions", 1) - n - 1):
                req = await complete_json(provider, [ChatMessage(role="system", content="the rules"),
                                                     ChatMessage(role="user", content=ctx.params["ask"])],
                                          Requirement, max_attempts=attempts, usage=usage)
            names.append(req.server_name)
        return {"names": names, "calls": usage.calls}
    return ask


@pytest.fixture
def store(tmp_path):
    s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


async def _question(store, job_id: str, *, after: str | None = None, timeout: float = 10):
    """The job's open question once it waits for one (a newer one than `after`)."""
    with anyio.fail_after(timeout):
        while True:
            job = store.get(job_id)
            q = store.open_question(job_id) if job.state == JobState.waiting else None
            if q is not None and q.id != after:
                return q
            assert not job.final, job.error
            await anyio.sleep(0.02)


def _refused(store, job_id, question_id, value) -> InputError:
    with pytest.raises(InputError) as e:
        record_answer(store, job_id, question_id, value)
    return e.value


def test_invalid_answers_are_refused_line_by_line_and_counted_until_the_job_fails(store):
    async def main():
        queue = JobQueue(store, ["ask"], default_timeout_s=60, poll_s=0.02)
        async with JobRunner(store, {"ask": asker()}, max_jobs=1, poll_s=0.02):
            job = queue.submit("ask", {"ask": "count the words of a text"})
            q = await _question(store, job.id)
            assert (q.kind, q.turn, q.turns_left, q.max_invalid) == ("analyst", 1, 0, 3)
            assert q.instructions == "=== system ===\nthe rules\n\n=== user ===\ncount the words of a text"
            assert q.answer_schema == Requirement.model_json_schema()
            assert q.answer_model == "builder.requirement:Requirement"
            assert store.get(job.id).phase == "awaiting_client"

            unknown = _refused(store, "nope", q.id, REQUIREMENT)
            assert unknown.field == "job_id"
            wrong = _refused(store, job.id, "q-nope", REQUIREMENT)
            assert wrong.field == "question_id" and f"its open question, {q.id} (analyst)" in str(wrong)
            assert store.question(q.id).invalid_answers == 0  # nothing counted for a wrong id

            bad_json = _refused(store, job.id, q.id, '{"server_name": "x",')
            assert bad_json.field == "answer" and "is not valid JSON" in str(bad_json)
            assert "invalid answer 1 of at most 3; the question stays open" in str(bad_json)

            shape = _refused(store, job.id, q.id, {"server_name": "Bad Name", "tools": []})
            lines = [line for line in str(shape).splitlines() if line.startswith("- ")]
            assert any(line.startswith("- server_name: 'Bad Name' does not match") for line in lines), lines
            assert any(line.startswith("- tools: [] should be non-empty") for line in lines), lines
            assert any(line.startswith("- (root): 'summary' is a required property") for line in lines), lines
            now = store.question(q.id)
            assert (now.state, now.invalid_answers, store.get(job.id).state) == ("open", 2, "waiting")

            # Valid against the schema, but not against the model's own rule relating two fields.
            twice = {**REQUIREMENT, "tools": REQUIREMENT["tools"] * 2}
            last = _refused(store, job.id, q.id, twice)
            assert "tool names must be unique; repeated: word_count" in str(last)
            assert "invalid answer 3 of 3: the question is given up and the build fails" in str(last)
            return await queue.wait(job.id, 10)

    job = anyio.run(main)
    assert job.state == JobState.failed
    assert "the client gave no valid Requirement in 3 answer(s)" in job.error and "tool names must be unique" in job.error
    after = _refused(store, job.id, _last_question(store, job.id), REQUIREMENT)
    assert after.field == "job_id" and "is failed; it waits for no answer" in str(after)


def _last_question(store, job_id: str) -> str:
    return store._read("SELECT id FROM questions WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,))[0]["id"]


def test_a_valid_answer_is_the_completion_and_an_answered_question_takes_no_second_answer(store):
    async def main():
        queue = JobQueue(store, ["ask"], default_timeout_s=60, poll_s=0.02)
        async with JobRunner(store, {"ask": asker()}, max_jobs=1, poll_s=0.02):
            job = queue.submit("ask", {"ask": "count words", "questions": 2})
            first = await _question(store, job.id)
            assert (first.turn, first.turns_left) == (1, 1)
            # Agents often send the object as JSON text; answer() returns once the worker took it up.
            moved = await answer(store, job.id, first.id, json.dumps(REQUIREMENT))
            assert moved.state != JobState.waiting or store.open_question(job.id).id != first.id
            second = await _question(store, job.id, after=first.id)
            again = _refused(store, job.id, first.id, REQUIREMENT)
            assert again.field == "question_id" and "was already answered" in str(again)
            assert f"its open question, {second.id}" in str(again)
            await answer(store, job.id, second.id, {**REQUIREMENT, "server_name": "second_one"})
            return await queue.wait(job.id, 10)

    job = anyio.run(main)
    assert job.state == JobState.succeeded and job.result == {"names": ["text_stats", "second_one"], "calls": 2}


def test_an_unanswered_question_expires_and_a_waiting_job_can_be_cancelled(store):
    async def main():
        queue = JobQueue(store, ["ask", "slow"], default_timeout_s=60, poll_s=0.02)
        async with JobRunner(store, {"ask": asker(wait_s=0.5), "slow": asker(wait_s=60)}, max_jobs=1, poll_s=0.02):
            expiring = queue.submit("ask", {"ask": "count words"})
            waiting = queue.submit("slow", {"ask": "count words"})  # runs in the slot the first gave back
            await _question(store, waiting.id)
            cancelled = await queue.cancel(waiting.id, wait_s=10)
            return await queue.wait(expiring.id, 10), cancelled

    expired, cancelled = anyio.run(main)
    assert expired.state == JobState.failed and "no answer came to analyst question" in expired.error
    assert "within 0.5 s (MCP_FOUNDRY_CLIENT_WAIT)" in expired.error
    assert cancelled.state == JobState.cancelled


ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
WAIT_S = 12.0


@pytest.mark.anyio
async def test_a_build_waiting_for_its_client_keeps_its_time_budget_and_a_waiting_build_is_cancelled(
        tmp_path, fake_web, monkeypatch):
    """The time a build waits for its answer is not taken from its budget: with 42 s of budget and 12 s of waiting,
    the loop still has the 20 s a turn needs (counted on the wall clock, it would not)."""
    for var in ("OPENAI_API_KEY", "MCP_FOUNDRY_LLM_API_KEY", "MCP_FOUNDRY_LLM_BASE_URL", "MCP_FOUNDRY_LLM_PROVIDER",
                "MCP_FOUNDRY_LLM_CASSETTE"):
        monkeypatch.delenv(var, raising=False)
    foundry = Foundry(Settings(data_dir=tmp_path / "data", env_cache_dir=ENV_CACHE, pypi_url=fake_web.url,
                               github_api_url=fake_web.url))
    await anyio.to_thread.run_sync(foundry.knowledge.find_similar, "warm the embedding model up")  # not build time
    params = {**build_params("count the words of a text, as a client would build it"), "timeout_s": 42}
    async with foundry.runner():
        job = foundry.queue.submit("build", params, timeout_s=42)
        req = await _question(foundry.store, job.id, timeout=30)
        assert req.kind == "requirement" and req.turn is None
        assert "count the words of a text" in req.instructions
        await anyio.sleep(WAIT_S)
        await foundry.answer(job.id, req.id, REQUIREMENT)
        code = await _question(foundry.store, job.id, after=req.id, timeout=30)
        assert (code.kind, code.turn, code.turns_left) == ("code", 1, foundry.settings.max_turns - 1)
        assert "word_count" in code.instructions and code.answer_model == "builder.draft:ServerDraft"
        job = await foundry.queue.cancel(job.id)
    assert job.state == JobState.cancelled
    assert not any(foundry.settings.servers_dir.iterdir()) and not any(foundry.settings.work_dir.iterdir())
    foundry.store.close()
