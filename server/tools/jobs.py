"""Job tools: validate_server, build_status, build_result, cancel_build, list_builds; the job log resource."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import Field

from builder.errors import InputError
from builder.jobs import Job, JobRunner, JobState
from builder.params import validation_params
from builder.service import Foundry
from server.errors import tool_errors
from server.models import JobList, JobResult, JobStatus, JobSummary, JobTicket

JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                             description="A job id returned by validate_server or request_build.")]
LOG_TAIL = 20


def register(app: MCPServer, foundry: Foundry, runner: JobRunner) -> None:
    """Add the job tools and the job log resource to `app`."""

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
        job = runner.submit("validate", params, timeout_s=timeout_s)
        return _ticket(job)

    @app.tool(title="Job status",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def build_status(job_id: JobId) -> JobStatus:
        """A job's phase, progress 0..1, recent log lines, timestamps and estimated time left."""
        job = foundry.store.get(job_id)
        return JobStatus.of(job, foundry.store.log(job_id, tail=LOG_TAIL))

    @app.tool(title="Job result",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def build_result(
        job_id: JobId,
        ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=600, description="Wait up to this many seconds for the job to "
                                       "finish; progress notifications are sent meanwhile.")] = 0,
    ) -> JobResult:
        """The report of a finished job (validation or build), or its current state when not finished."""
        job = foundry.store.get(job_id)
        if wait_s and not job.final:
            sent: list[tuple[float, str]] = []

            async def progress(j: Job) -> None:
                note = (j.progress, f"{j.phase}: {j.message}".strip(": "))
                if not sent or note != sent[-1]:  # a log line alone changes nothing worth notifying
                    sent.append(note)
                    await ctx.report_progress(note[0], 1.0, note[1])

            job = await runner.wait(job_id, wait_s, on_change=progress)
        return JobResult(job_id=job.id, kind=job.kind, state=job.state, final=job.final, error=job.error,
                         result=job.result)

    @app.tool(title="Cancel a job",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True,
                                          openWorldHint=False))
    @tool_errors
    async def cancel_build(job_id: JobId) -> JobStatus:
        """Cancel a queued or running job; returns once its sandboxed processes are stopped and nothing is deployed."""
        job = await runner.cancel(job_id)
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
                     next=f"build_status(job_id='{job.id}') to follow it; build_result(job_id='{job.id}', wait_s=60) "
                          "for the report")
