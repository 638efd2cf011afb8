"""Lending a client's own model (MCP sampling) to the builds it asked for, through their stored questions.

A build runs in the worker, which cannot reach any client's session. When a session that
offers sampling asks for a build with coder "auto", this front end watches that job while
the session lives: each question the job stores is sent to the client as a
sampling/createMessage request (the question's very messages), and the reply goes through
the same answer function as answer_build. An invalid reply is refused and counted there,
and the client is asked again with the problems, as complete_json re-asks a model. When
the client cannot be asked (it refused, or its connection is gone), the question stays
open for answer_build. With an endpoint configured the worker asks the endpoint, no
question is stored, and nothing here runs.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from builder.errors import InputError, LLMError
from builder.jobs import JobState
from builder.jobs.model import Question
from builder.llm.answers import answer
from builder.llm.base import ChatMessage
from builder.service import Foundry

log = logging.getLogger("mcp_foundry.server")

POLL_S = 0.2
"""How often the relay looks at the jobs it watches."""
MAX_TOKENS = 16_000
"""What a sampled answer may be: a draft with every file of a server."""


class SamplingRelay:
    """Answers the questions of jobs submitted by sessions that lend their model; run `run()` in the serve task group."""

    def __init__(self, foundry: Foundry, *, poll_s: float = POLL_S, timeout_s: float = 600.0):
        self.foundry = foundry
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        """Seconds the client's model has for one answer."""
        self._jobs: dict[str, Any] = {}
        self._asking: set[str] = set()
        self._wake = anyio.Event()

    def watch(self, job_id: str, session: Any) -> None:
        """Answer `job_id`'s questions by asking `session`'s client (a ServerSession that offered sampling)."""
        self._jobs[job_id] = session
        self._wake.set()

    def handles(self, job_id: str) -> bool:
        """True while this relay answers the job's questions (its caller need not)."""
        return job_id in self._jobs

    async def run(self) -> None:
        """Watch until cancelled (the serve process ends)."""
        async with anyio.create_task_group() as tg:
            while True:
                for job_id, session in list(self._jobs.items()):
                    question = self._open_question(job_id)
                    if question is not None and question.id not in self._asking:
                        self._asking.add(question.id)
                        tg.start_soon(self._relay, job_id, session, question)
                with anyio.move_on_after(self.poll_s if self._jobs else float("inf")):  # idle: until watch()
                    await self._wake.wait()
                self._wake = anyio.Event()

    def _open_question(self, job_id: str) -> Question | None:
        store = self.foundry.store
        try:
            job = store.get(job_id)
        except InputError:
            job = None
        if job is None or job.final:
            self._jobs.pop(job_id, None)
            return None
        return store.open_question(job_id) if job.state == JobState.waiting else None

    async def _relay(self, job_id: str, session: Any, question: Question) -> None:
        from builder.llm.sampling import SamplingProvider

        store = self.foundry.store
        provider = SamplingProvider(session, default_max_tokens=MAX_TOKENS, timeout_s=self.timeout_s)
        convo = [ChatMessage.model_validate(m) for m in question.messages]
        name = question.answer_model.rpartition(":")[2] or question.kind
        try:
            for _ in range(question.max_invalid - question.invalid_answers):
                completion = await provider.complete(convo, json_schema=question.answer_schema, schema_name=name,
                                                     max_tokens=MAX_TOKENS)
                try:
                    await answer(store, job_id, question.id, completion.text)
                    store.append_log(job_id, f"{question.kind} question {question.id} answered by the client's "
                                     "model (MCP sampling)")
                    return
                except InputError as e:
                    if e.field != "answer":
                        return  # the job moved on (cancelled, expired, answered from elsewhere)
                    convo += [ChatMessage(role="assistant", content=completion.text),
                              ChatMessage(role="user", content=f"Your reply was not valid: {e.problem}\nAnswer again "
                                          f"with only a JSON object valid against the {name} schema.")]
        except (LLMError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            # From here on the question waits for answer_build, and build_result shows it to the caller.
            self._jobs.pop(job_id, None)
            store.append_log(job_id, f"the client's model could not be asked through MCP sampling ({e}); the "
                             f"question waits for answer_build")
            log.warning("job %s: sampling relay stopped: %s", job_id, e)
        finally:
            self._asking.discard(question.id)
