"""What the REST and WebSocket routes answer, as pydantic models (the OpenAPI document is generated from them).

The body of `POST /api/v1/build` is `request_build`'s arguments and that of `POST
/api/v1/validate` is `validate_server`'s, taken from the MCP tools themselves so that both
faces accept exactly the same input; that of `POST /api/v1/build/{id}/answer` (AnswerBody)
is `answer_build`'s arguments but the job id, which the path names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from builder.jobs import JobState
from server.models import QuestionView


class ErrorBody(BaseModel):
    """Every error answer: what went wrong, and for rejected input one line per bad field."""

    error: str = Field(description="What went wrong and how to fix it.")
    errors: list[str] = Field(default_factory=list, description="On 422: one line per bad field, "
                              "`<tool>: <field>: <problem> (accepted: ...)`, as the MCP tools say it.")


class BuildAccepted(BaseModel):
    """202 answer of POST /api/v1/build and /api/v1/validate: the job is queued."""

    build_id: str = Field(description="The job's id: follow it under /api/v1/build/{build_id}/.")
    status: Literal["queued"] = "queued"
    estimated_completion: str = Field(description="When the job is expected to be final (ISO 8601, UTC): the "
                                      "median run time of recent jobs of its kind, after those queued before it.")
    message: str = Field(description="What to call next.")


class BuildStatus(BaseModel):
    """GET /api/v1/build/{id}/status: where a job is."""

    build_id: str
    status: JobState = Field(description="The job's state.")
    progress: float = Field(description="0..1")
    current_phase: str = Field(description="The phase it is in, with its latest message.")
    logs: list[str] = Field(description="The last log lines, oldest first (`HH:MM:SS line`).")
    estimated_remaining: float | None = Field(description="Estimated seconds until it is final; null when unknown.")
    worker: str | None = Field(description="Id of the worker that runs or ran it (null while queued).")
    question: QuestionView | None = Field(None, description="While the build waits for its caller (status waiting): "
                                          "what it asks in place of a model. Answer it with POST "
                                          "/api/v1/build/{id}/answer.")


class AnswerBody(BaseModel):
    """POST /api/v1/build/{id}/answer: the answer to a waiting build's open question."""

    question_id: str = Field(description="The id of the question the build's status shows.")
    answer: dict[str, Any] | str = Field(description="The JSON object the question's answer_schema describes, as an "
                                         "object or as JSON text.")


class TestResults(BaseModel):
    """What the sandboxed validator found (the final validation of a build or deploy)."""

    verdict: Literal["pass", "fail"]
    checks_passed: int
    checks_total: int
    failed: list[str] = Field(description="`<check>: <reason> [failure class]` for each failed check.")
    cases: list[dict[str, Any]] = Field(default_factory=list, description="Each test case run: the call, what came "
                                        "back, passed, latency (present when the full report is stored).")


class BuildMetrics(BaseModel):
    """Numbers about one finished job, from its row and its result."""

    kind: str = Field(description="validate, build, deploy or seed.")
    queued_s: float | None = Field(description="Seconds from submission to a worker taking it.")
    run_s: float | None = Field(description="Seconds from a worker taking it to its end.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = Field(0, description="Code -> Reason -> Act turns (builds).")
    reused: str | None = Field(None, description="How a reused case was found (exact, similar ...); null otherwise.")
    phases: dict[str, float] = Field(default_factory=dict, description="Seconds per phase.")


class BuildResult(BaseModel):
    """GET /api/v1/build/{id}/result, once the job is final."""

    build_id: str
    status: JobState
    success: bool
    report: dict[str, Any] | None = Field(description="The job's result document (as build_result's `result`: a "
                                          "BuildReport, or {ok, report: ValidationReport, error} for a validation).")
    error_message: str | None
    build_metrics: BuildMetrics
    test_results: TestResults | None = Field(description="The validation that decided the outcome; null when none ran.")


class Health(BaseModel):
    """GET /healthz."""

    status: Literal["ok"] = "ok"
    version: str
    store: str = Field(description="The job store answered; its backend.")
    workers_alive: int


class ProgressData(BaseModel):
    """The data of a `progress_update` WebSocket message."""

    build_id: str
    phase: str
    progress: float
    message: str
    timestamp: str = Field(description="When the job last changed (ISO 8601, UTC).")


class ProgressUpdate(BaseModel):
    """WebSocket message: the job's phase or progress changed."""

    type: Literal["progress_update"] = "progress_update"
    data: ProgressData


class LogData(BaseModel):
    """The data of a `log` WebSocket message."""

    build_id: str
    n: int = Field(description="1 for the job's first line, then counting up.")
    line: str


class LogLine(BaseModel):
    """WebSocket message: one new log line of the job."""

    type: Literal["log"] = "log"
    data: LogData


class FinalData(BaseModel):
    """The data of the `final` WebSocket message."""

    build_id: str
    status: JobState
    success: bool
    error_message: str | None
    timestamp: str


class Final(BaseModel):
    """WebSocket message: the job is final; the server closes the socket after it."""

    type: Literal["final"] = "final"
    data: FinalData
