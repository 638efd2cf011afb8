"""What a job and a worker are, as stored: plain pydantic models shared by every job store backend."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

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
