"""The calling agent as the model: a build puts each model request to its client as a stored question.

With no model configured (or coder="client"), every complete_json call a build makes (the
requirement, a draft, a fix, or any other kind a build step names with `asking`) becomes a
Question in the job store: the very messages a model would get, and the JSON Schema of the
answer. The job reads `waiting`, phase `awaiting_client`, and holds no worker slot until
the answer is stored (by `answer_build`, `mcp-foundry answer`, or a front end that relays
the question to its client's model through MCP sampling; see builder.llm.answers). The
answer comes back as the completion's text, so that everything after it (validation of the
answer, Reason, Act, healing) runs exactly as for any provider.

The question lives in the store and this coroutine in the worker: a client may answer
from any session, or from the command line; if the worker dies, the job reads
`interrupted` as any job of a dead worker does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from builder.errors import BuildError, LLMError, NoAnswer
from builder.jobs.model import Question
from builder.llm.base import ChatMessage, Completion
from builder.llm.structured import wanted

if TYPE_CHECKING:
    from builder.jobs.runner import JobContext

AWAITING_CLIENT = "awaiting_client"
"""The phase of a job while its question waits for an answer."""
READ_EVERY_S = 1.0
"""The waiting job reads its question at least this often, whether or not the store's change counter moved."""


@dataclass(frozen=True)
class Topic:
    """What the model request in progress is, as the build step that makes it names it."""

    kind: str
    """requirement, code, fix, or another kind a build step names."""
    turn: int | None = None
    turns_left: int | None = None


_topic: ContextVar[Topic | None] = ContextVar("mcp_foundry_llm_topic", default=None)


@contextmanager
def asking(kind: str, *, turn: int | None = None, turns_left: int | None = None) -> Iterator[None]:
    """Name the model requests made inside this block (in this task): a client sees `kind`, `turn` and
    `turns_left` on the question. Other providers ignore it."""
    token = _topic.set(Topic(kind=kind, turn=turn, turns_left=turns_left))
    try:
        yield
    finally:
        _topic.reset(token)


def model_path(cls: type) -> str:
    """'module:QualName' of a class, as a question stores its answer model."""
    return f"{cls.__module__}:{cls.__qualname__}"


class ClientProvider:
    """An LLMProvider whose every completion is a question to the job's client, answered through the job store."""

    name = "client"

    def __init__(self, ctx: JobContext, *, wait_s: float = 1800.0, poll_s: float = 0.1):
        self.ctx = ctx
        self.wait_s = wait_s
        """Seconds a question waits for its answer before the job fails (MCP_FOUNDRY_CLIENT_WAIT)."""
        self.poll_s = poll_s

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Store the question, wait (without a worker slot) for its answer, and return the answer as JSON text.

        LLMError when the client gave up on it (too many invalid answers); NoAnswer when no
        answer came within `wait_s`. A cancel of the job reaches it while it waits.
        """
        ctx = self.ctx
        topic = _topic.get() or Topic(kind=schema_name.lower())
        want = wanted()
        question = Question(
            id=uuid.uuid4().hex[:12], job_id=ctx.job_id, kind=topic.kind,
            messages=[{"role": m.role, "content": m.content} for m in messages],
            answer_schema=json_schema or {"type": "object"}, answer_model=model_path(want.model) if want else "",
            turn=topic.turn, turns_left=topic.turns_left, asked_at=time.time(),
            max_invalid=want.attempts_left if want else 1)
        if not ctx.store.ask(question, ctx.worker_id):
            raise BuildError(f"job {ctx.job_id} is no longer held by this worker; its question was not asked")
        turn = f", turn {topic.turn}" if topic.turn is not None else ""
        ctx.log(f"asked the client: {topic.kind} question {question.id}{turn}; waiting for its answer "
                f"(answer_build, or `mcp-foundry answer {ctx.job_id} {question.id} FILE`)")
        message = (f"waiting for the client's answer to {topic.kind} question {question.id}{turn}: build_status shows "
                   "it, answer_build answers it")
        async with ctx.released(message, phase=AWAITING_CLIENT):
            final = await self._wait(question)
        if final is None:
            raise NoAnswer(f"no answer came to {topic.kind} question {question.id}{turn} within {self.wait_s:g} s "
                           "(MCP_FOUNDRY_CLIENT_WAIT); the build stops here. Request it again and answer its "
                           "questions with answer_build (or configure a model: MCP_FOUNDRY_LLM_BASE_URL)")
        if final.state == "given_up":
            raise LLMError(f"the client gave no valid {schema_name} in {final.invalid_answers} answer(s) to "
                           f"{topic.kind} question {question.id}; last problems:\n{final.problems}")
        ctx.log(f"{topic.kind} question {question.id} answered")
        return Completion(text=json.dumps(final.answer), model="client")

    async def _wait(self, question: Question) -> Question | None:
        """The question once it is no longer open, or None when `wait_s` passed first."""
        store = self.ctx.store
        deadline = anyio.current_time() + self.wait_s
        seen, read_at = store.changes(), anyio.current_time()
        while True:
            now = anyio.current_time()
            if now >= deadline:
                return None
            await anyio.sleep(min(self.poll_s, deadline - now))
            changes = store.changes()
            if changes != seen or anyio.current_time() - read_at >= READ_EVERY_S:
                seen, read_at = changes, anyio.current_time()
                current = store.question(question.id)
                if current.state != "open":
                    return current
