"""What a job and a worker are, as stored: plain pydantic models shared by every job store backend."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class JobState(StrEnum):
    """Where a job is in its life; the last four are final."""

    queued = "queued"
    running = "running"
    waiting = "waiting"
    """Started, but parked until something outside answers (it holds no worker slot meanwhile)."""
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


FINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled, JobState.interrupted})
IN_HAND_STATES = frozenset({JobState.running, JobState.waiting})
"""States in which a job belongs to one worker, whose death interrupts it."""

PRIORITIES = {"low": -1, "normal": 0, "high": 1}
"""A job's priority name -> its rank in the queue; equal ranks run in arrival order."""

INTERRUPTED = ("interrupted: the mcp-foundry worker running this job stopped before it finished (crash, kill or "
               "shutdown); submit it again to retry")
SHUT_DOWN = "interrupted: the mcp-foundry worker shut down while this job ran; submit it again to retry"


class Job(BaseModel):
    """One job as stored."""

    id: str
    kind: str
    state: JobState
    phase: str = "queued"
    progress: float = 0.0
    message: str = ""
    params: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float
    timeout_s: float
    priority: str = "normal"
    """low | normal | high: higher ranks are claimed first, equal ranks in arrival order."""
    worker: str | None = None
    """Id of the worker that claimed the job (None while queued)."""
    cancel_requested: bool = False
    """A front end asked for it to stop; the worker holding it stops it and records `cancelled`."""
    rev: int = 0
    """Bumped on every change of the job (state, progress, a log line): readers compare it to see a change."""

    @property
    def final(self) -> bool:
        """True once the job can no longer change."""
        return self.state in FINAL_STATES

    def eta_s(self, now: float | None = None) -> float | None:
        """Estimated seconds left, from elapsed time and progress; None when unknown."""
        if self.state != JobState.running or not self.started_at or self.progress <= 0.01:
            return None
        elapsed = (now or time.time()) - self.started_at
        return max(0.0, elapsed / self.progress * (1.0 - self.progress))


class WorkerInfo(BaseModel):
    """A worker process as registered in the store (its lease is `heartbeat_at + lease_s`)."""

    id: str
    host: str = Field(description="Host name of the machine it runs on.")
    boot_id: str = Field(description="The machine's boot id: with `host`, tells whether its pid can be checked here.")
    pid: int
    proc_start: str = Field(description="Start time of the process (clock ticks since boot): a recycled pid differs.")
    started_at: float
    heartbeat_at: float
    lease_s: float = Field(description="Seconds after its last heartbeat at which others may declare it dead.")
    max_jobs: int
    jobs: list[str] = []
    """Ids of the jobs it holds (running or waiting), when the store was asked for them."""


class JobCount(BaseModel):
    """How many jobs of one kind and priority are in one state (the store's cheap aggregate, for metrics)."""

    kind: str
    priority: str
    state: JobState
    n: int


class Question(BaseModel):
    """A model request a job put to its client instead of a model: stored while the job waits for the answer.

    `messages` are the very chat messages a model would get, and `answer_schema` the JSON
    Schema of the reply; the client answers with a JSON object. The job holds no worker
    slot meanwhile, and reads `waiting`, phase `awaiting_client`.
    """

    id: str
    job_id: str
    kind: str = Field(description="What is asked: requirement, code, fix, or another kind a build step names.")
    messages: list[dict[str, str]] = Field(description="The chat a model would get: [{role, content}], in order.")
    answer_schema: dict[str, Any] = Field(description="JSON Schema of the answer (a JSON object).")
    answer_model: str = Field("", description="'module:Class' of the pydantic model the answer must also satisfy, "
                              "for models of the builder package; empty: the schema alone.")
    turn: int | None = Field(None, description="The build turn that asks (null outside the Code -> Reason -> Act "
                             "loop).")
    turns_left: int | None = Field(None, description="Turns that may follow this one if its draft fails.")
    asked_at: float
    state: Literal["open", "answered", "given_up"] = "open"
    """open: waiting for an answer; answered: a valid answer is stored; given_up: too many invalid answers."""
    answer: dict[str, Any] | None = None
    answered_at: float | None = None
    invalid_answers: int = 0
    """Answers refused so far (each counts like a model's malformed reply)."""
    max_invalid: int = Field(3, ge=1, description="At this many invalid answers the question is given up and the "
                             "job fails, as it would for a model that kept answering wrongly.")
    problems: str | None = None
    """Why the last invalid answer was refused, one line per problem."""

    @property
    def instructions(self) -> str:
        """The messages as one text, each under a header naming its role."""
        return "\n\n".join(f"=== {m.get('role', 'user')} ===\n{m.get('content', '')}" for m in self.messages)
