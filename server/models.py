"""Structured outputs of the MCP tools (what a client sees as structuredContent)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from builder.jobs import Job


class JobTicket(BaseModel):
    """Returned at once by a tool that starts a job."""

    job_id: str
    kind: str
    state: str
    next: str = Field(description="What to call to follow the job.")


class JobStatus(BaseModel):
    """A job's state, progress and recent log lines."""

    job_id: str
    kind: str
    state: str
    phase: str
    progress: float = Field(description="0..1")
    message: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    eta_s: float | None = Field(description="Estimated seconds left; null when unknown.")
    error: str | None
    log_tail: list[str]
    worker: str | None = Field(None, description="Id of the worker process that runs or ran the job.")
    note: str | None = Field(None, description="Why a queued job does not start, when no worker will take it.")

    @classmethod
    def of(cls, job: Job, log_tail: list[str], note: str | None = None) -> JobStatus:
        """Shape a stored job for a client."""
        return cls(job_id=job.id, kind=job.kind, state=job.state, phase=job.phase, progress=job.progress,
                   message=job.message, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, updated_at=job.updated_at, eta_s=job.eta_s(), error=job.error,
                   log_tail=log_tail, worker=job.worker, note=note)


class JobResult(BaseModel):
    """A job's outcome: the result document once final, else its state."""

    job_id: str
    kind: str
    state: str
    final: bool
    error: str | None
    result: dict[str, Any] | None = Field(description="The job's report (a ValidationReport, BuildReport, ...).")
    next: str | None = Field(None, description="What to call to go on waiting, while the job is not final.")


class JobSummary(BaseModel):
    """One line of list_builds."""

    job_id: str
    kind: str
    state: str
    phase: str
    progress: float
    created_at: float
    finished_at: float | None
    error: str | None


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobSummary]
