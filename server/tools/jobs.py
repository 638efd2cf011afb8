"""Job tools: validate_server, build_status, build_result, cancel_build, list_builds; the job log resource."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import Field

from builder.errors import InputError
from builder.jobs import Job, JobState
from builder.jobs.model import Question
from builder.params import validation_params
from builder.service import Foundry
from server.errors import tool_errors
from server.models import JobList, JobResult, JobStatus, JobSummary, JobTicket, QuestionView
from server.tools.relay import SamplingRelay

JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                             description="A job id returned by validate_server or request_build.")]
LOG_TAIL = 20
MAX_WAIT_S = 50
"""build_result never holds a request longer: clients commonly give up on a request at 60 s."""
SUGGESTED_WAIT_S = 45
"""The wait_s that `next` hints suggest."""
PROGRESS_EVERY_S = 8.0
"""While build_result waits, a progress notification goes out at least this often (changed or not), so that
clients which reset their timeout on progress keep waiting."""
CANCEL_WAIT_S = 30
"""cancel_build waits this long for the job to unwind before it says it has not."""
HOLD_MARGIN_S = 1.0
"""build_result answers this long before wait_s is up, so that the answer arrives within wait_s."""


def register(app: MCPServer, foundry: Foundry, relay: SamplingRelay | None = None) -> None:
    """Add the job tools and the job log resource to `app` (`relay`: the builds whose questions this front end
    answers itself, through its client's model)."""
    queue = foundry.queue

    def question_of(job: Job) -> Question | None:
        return foundry.store.open_question(job.id) if job.state == JobState.waiting else None

    def asks_caller(job: Job) -> bool:
        """The job waits for an answer that its caller, not this front end's relay, is to give."""
        return job.state == JobState.waiting and not (relay and relay.handles(job.id)) \
            and question_of(job) is not None

    @app.tool(title="Validate an MCP server",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
    @tool_errors
    async def validate_server(
        path: Annotated[str | None, Field(max_length=4096, description="A server directory holding server.py "
                                          "(its requirements.txt and cases.json are used when present).")] = None,
        command: Annotated[str | None, Field(max_length=4096, description="Instead of path: a command line that "
                                             "starts an MCP server on stdio.")] = None,
        cases_file: Annotated[str | None, Field(max_length=4096, description="A test-cases JSON file; default "
                                                "<path>/cases.json.")] = None,
        needs_network: Annotated[bool, Field(description="Let the server under test use the network.")] = False,
        timeout_s: Annotated[float | None, Field(gt=0, le=86400, description="Job timeout in seconds.")] = None,
    ) -> JobTicket:
        """Validate an MCP server in the sandbox over the real protocol; returns a job id at once.

        Follow it with build_status, then read the ValidationReport with build_result.
        """
        params = validation_params(path, command, cases_file, needs_network, timeout_s)
        foundry.backend  # noqa: B018 - an unusable sandbox backend is refused now, not inside the job
        job = queue.submit("validate", params, timeout_s=timeout_s)
        return _ticket(job)

    @app.tool(title="Job status",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def build_status(job_id: JobId) -> JobStatus:
        """A job's phase, progress 0..1, recent log lines, timestamps, estimated time left and its worker.

        While a build waits for you (state waiting, phase awaiting_client), `question` holds
        what it asks in place of a model: `instructions` (the complete prompt), `answer_schema`
        (the JSON Schema of the answer), `kind` (requirement, code or fix), `turn`, `turns_left`.
        Do what the instructions say and answer with answer_build.
        """
        job = queue.get(job_id)
        return JobStatus.of(job, foundry.store.log(job_id, tail=LOG_TAIL), note=queue.note(job),
                            question=question_of(job))

    @app.tool(title="Job result",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def build_result(
        job_id: JobId,
        ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S, description="Wait up to this many seconds (at most "
                                       f"{MAX_WAIT_S}) for the job to finish, with a progress notification at least "
                                       f"every {PROGRESS_EVERY_S:g} s; call again to wait longer.")] = 0,
    ) -> JobResult:
        """The report of a finished job (validation or build), or its current state when not finished.

        Waiting ends early when the build stops to ask you a question: it is in `question`;
        answer it with answer_build.
        """
        entered = anyio.current_time()
        job = queue.get(job_id)
        if wait_s and not job.final and not asks_caller(job):
            budget = wait_s - HOLD_MARGIN_S - (anyio.current_time() - entered)
            job = await queue.wait(job_id, max(0.0, budget), on_change=_Progress(ctx, foundry), beat_s=1.0,
                                   until=asks_caller)
        question = question_of(job) if asks_caller(job) else None
        if job.final:
            hint = None
        elif question is not None:
            hint = (f"answer_build(job_id='{job.id}', question_id='{question.id}', answer=...) with the answer to "
                    "`question`; then build_result again")
        else:
            hint = f"build_result(job_id='{job.id}', wait_s={SUGGESTED_WAIT_S}) to wait on"
        return JobResult(job_id=job.id, kind=job.kind, state=job.state, final=job.final, error=job.error,
                         result=job.result, next=hint, question=QuestionView.of(question) if question else None)

    @app.tool(title="Cancel a job",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True,
                                          openWorldHint=False))
    @tool_errors
    async def cancel_build(job_id: JobId) -> JobStatus:
        """Cancel a queued, running or waiting job (one waiting for your answer too); returns once its sandboxed
        processes are stopped and nothing is deployed."""
        job = await queue.cancel(job_id, wait_s=CANCEL_WAIT_S)
        return JobStatus.of(job, foundry.store.log(job_id, tail=LOG_TAIL))

    @app.tool(title="List jobs",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def list_builds(
        state: Annotated[str | None, Field(description="Only jobs in this state: " +
                                           ", ".join(s.value for s in JobState))] = None,
        kind: Annotated[str | None, Field(description="Only jobs of this kind: validate, build or seed.")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many jobs.")] = 20,
    ) -> JobList:
        """Jobs, newest first."""
        if state and state not in JobState.__members__:
            raise InputError("state", f"unknown state {state!r}", ", ".join(JobState.__members__))
        kinds = list(foundry.handlers())
        if kind and kind not in kinds:
            raise InputError("kind", f"unknown job kind {kind!r}", ", ".join(kinds))
        jobs = foundry.store.list(state=state, kind=kind, limit=limit)
        return JobList(jobs=[JobSummary(job_id=j.id, kind=j.kind, state=j.state, phase=j.phase, progress=j.progress,
                                        created_at=j.created_at, finished_at=j.finished_at, error=j.error)
                             for j in jobs])

    @app.resource("foundry://jobs/{job_id}/log", mime_type="text/plain",
                  description="The full log of one job, oldest line first.")
    def job_log(job_id: str) -> str:
        try:
            return "\n".join(foundry.store.log(job_id)) + "\n"
        except InputError as e:
            raise ResourceNotFoundError(str(e)) from e


def _ticket(job: Job) -> JobTicket:
    return JobTicket(job_id=job.id, kind=job.kind, state=job.state,
                     next=f"build_status(job_id='{job.id}') to follow it; build_result(job_id='{job.id}', "
                          f"wait_s={SUGGESTED_WAIT_S}) for the report, again until final")


class _Progress:
    """Notifies a job's progress when it changes, and at least every PROGRESS_EVERY_S while it does not."""

    def __init__(self, ctx: Context, foundry: Foundry):
        self.ctx, self.queue = ctx, foundry.queue
        self.sent: tuple[float, str] | None = None
        self.value, self.at = -1.0, anyio.current_time()

    async def __call__(self, job: Job) -> None:
        note = (job.progress, _progress_message(job, self.queue.note(job)))
        now = anyio.current_time()
        # A log line alone is not worth a notification, but a long silence is: some clients time out on it.
        if note == self.sent and now - self.at < PROGRESS_EVERY_S:
            return
        # The protocol wants each notification's value above the last, so an unchanged fraction is nudged up.
        self.value = max(note[0], self.value + 1e-4)
        self.sent, self.at = note, now
        await self.ctx.report_progress(self.value, 1.0, note[1])


def _progress_message(job: Job, note: str | None) -> str:
    if job.state == JobState.queued:
        return "queued" + (f": {note}" if note else ", waiting for a worker slot")
    text = f"{job.phase}: {job.message}".strip(": ")
    return f"waiting, {text}" if job.state == JobState.waiting else text
