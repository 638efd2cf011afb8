"""Structured outputs of the MCP tools (what a client sees as structuredContent)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from builder.jobs import Job
from builder.jobs.model import Question


class JobTicket(BaseModel):
    """Returned at once by a tool that starts a job."""

    job_id: str
    kind: str
    state: str
    next: str = Field(description="What to call to follow the job.")


class QuestionView(BaseModel):
    """What a waiting build asks its caller, in place of a model: answer it with answer_build."""

    id: str
    kind: str = Field(description="requirement (what to build), code (the first draft), fix (a draft after a failed "
                      "turn), or another kind a build step names.")
    instructions: str = Field(description="The complete text a model would get (rules, requirement, research, "
                              "repository patterns; for a fix, the failures and the healing strategy): follow it as "
                              "that model would.")
    answer_schema: dict[str, Any] = Field(description="JSON Schema of the answer, a JSON object.")
    turn: int | None = Field(description="The build turn that asks (null outside the Code -> Reason -> Act loop).")
    turns_left: int | None = Field(description="Turns that may follow this one if its draft fails.")
    invalid_answers: int = Field(description="Answers refused so far.")
    max_invalid: int = Field(description="At this many invalid answers the build fails, as for a model.")
    answer_with: str = Field(description="The call that answers it.")

    @classmethod
    def of(cls, q: Question) -> QuestionView:
        """Shape a stored question for a client."""
        return cls(id=q.id, kind=q.kind, instructions=q.instructions, answer_schema=q.answer_schema, turn=q.turn,
                   turns_left=q.turns_left, invalid_answers=q.invalid_answers, max_invalid=q.max_invalid,
                   answer_with=f"answer_build(job_id='{q.job_id}', question_id='{q.id}', answer={{...}}) with a JSON "
                               "object valid against answer_schema")


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
    question: QuestionView | None = Field(None, description="While the job waits for its caller: what it asks. "
                                          "Answer it with answer_build.")

    @classmethod
    def of(cls, job: Job, log_tail: list[str], note: str | None = None,
           question: Question | None = None) -> JobStatus:
        """Shape a stored job (and its open question, if it waits for one) for a client."""
        return cls(job_id=job.id, kind=job.kind, state=job.state, phase=job.phase, progress=job.progress,
                   message=job.message, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, updated_at=job.updated_at, eta_s=job.eta_s(), error=job.error,
                   log_tail=log_tail, worker=job.worker, note=note,
                   question=QuestionView.of(question) if question is not None else None)


class JobResult(BaseModel):
    """A job's outcome: the result document once final, else its state."""

    job_id: str
    kind: str
    state: str
    final: bool
    error: str | None
    result: dict[str, Any] | None = Field(description="The job's report (a ValidationReport, BuildReport, ...).")
    next: str | None = Field(None, description="What to call to go on waiting, while the job is not final.")
    question: QuestionView | None = Field(None, description="While the job waits for its caller: what it asks. "
                                          "Answer it with answer_build.")


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
