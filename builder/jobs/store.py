"""The job store contract: the one thing front ends and workers share.

Front ends (stdio and HTTP `serve`, the CLI) create jobs, read them, and record cancel
requests; workers register, claim the next queued job, report on it and finish it.
Neither ever calls the other: a client's session can end while its job goes on, and a
worker can run on another machine when the store is shared.

Rules every backend keeps:
- The table is the queue. `claim_next` takes the highest-priority, oldest queued job
  atomically (SQLite: one write transaction; PostgreSQL: `FOR UPDATE SKIP LOCKED`), so
  a job is claimed by one worker only, and a final job never runs again.
- Every write a worker makes about a job names the worker, and is a no-op unless the
  job is still held by that worker: a worker declared dead cannot overwrite the
  `interrupted` that others recorded.
- A job held (running or waiting) by a dead worker reads `interrupted`. Dead means: on
  this machine, its pid and start time are gone (seen at once); elsewhere, its lease
  (`heartbeat_at + lease_s`) has expired.
- A job may put questions to its client (a Question: JSON columns only). A question is
  answered at most once, and only while it is open and its job reads `waiting`: the
  check and the write are one transaction, so two answers racing leave exactly one.
  Every write about a question bumps its job's `rev`, so `changes()` moves.
- Calls are short and synchronous (like DB-API); an async caller may run them inline
  (SQLite) or in a thread (a networked database).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from builder.jobs.model import Job, JobCount, JobState, Question, WorkerInfo


@runtime_checkable
class JobStore(Protocol):
    """Durable jobs, their logs, and the workers that run them."""

    # -- front ends ------------------------------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], *, timeout_s: float, priority: str = "normal") -> Job:
        """Insert a queued job (priority low | normal | high) and return it."""
        ...

    def get(self, job_id: str) -> Job:
        """One job (InputError naming `job_id` if unknown); a job held by a dead worker reads `interrupted`."""
        ...

    def list(self, *, state: str | Collection[str] | None = None, kind: str | None = None,
             worker: str | None = None, limit: int = 50) -> list[Job]:
        """Jobs newest first, filtered by state(s), kind and the worker holding them."""
        ...

    def log(self, job_id: str, tail: int | None = None) -> list[str]:
        """A job's log lines ("HH:MM:SS line"), oldest first; only the last `tail` when given."""
        ...

    def request_cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one is cancelled at once; a running or waiting one is flagged for its worker."""
        ...

    def changes(self) -> int:
        """A cheap counter that moves whenever any job or worker may have changed (poll it, then read)."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Live workers, oldest first, each with the ids of the jobs it holds."""
        ...

    def counts(self) -> list[JobCount]:
        """Jobs per (kind, priority, state), one grouped query: what metrics need without reading every job.

        As stored: a job held by a worker that died but was not yet found dead (by a read of
        that job or by `reap`) still counts as running or waiting.
        """
        ...

    # -- workers ---------------------------------------------------------------------------------------------------
    def register_worker(self, *, max_jobs: int, lease_s: float) -> WorkerInfo:
        """Add this process as a worker with a fresh lease; returns its row (its `id` names it in every call)."""
        ...

    def heartbeat(self, worker_id: str) -> bool:
        """Renew the worker's lease; False when it was lost (declared dead): the worker must stop its jobs."""
        ...

    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker that is stopping (its jobs must be final by then)."""
        ...

    def reap(self) -> list[str]:
        """Mark the held jobs of dead workers `interrupted` and forget those workers; returns the job ids."""
        ...

    def claim_next(self, worker_id: str, kinds: Iterable[str]) -> Job | None:
        """Atomically move the first queued job of one of `kinds` to running for this worker (None if none)."""
        ...

    def update(self, job_id: str, worker_id: str, *, state: JobState | None = None, phase: str | None = None,
               progress: float | None = None, message: str | None = None) -> bool:
        """Change a held job's progress, phase, message, or state between running and waiting."""
        ...

    def append_log(self, job_id: str, line: str) -> None:
        """Append one line to a job's log."""
        ...

    def finish(self, job_id: str, state: JobState, *, result: Mapping[str, Any] | None = None,
               error: str | None = None, worker_id: str | None = None) -> bool:
        """Record a final state once (only while held by `worker_id` when given); False if it was not recorded."""
        ...

    def cancel_requests(self, worker_id: str) -> list[str]:
        """Ids of the jobs this worker holds that a front end asked to stop."""
        ...

    # -- questions: a job that waits for its client's answer --------------------------------------------------------
    def ask(self, question: Question, worker_id: str) -> bool:
        """Store a new open question of a job this worker holds; False (nothing stored) when it does not hold it."""
        ...

    def question(self, question_id: str) -> Question:
        """One question, in any state (InputError naming `question_id` if unknown)."""
        ...

    def open_question(self, job_id: str) -> Question | None:
        """The job's newest question while it is open, else None."""
        ...

    def answer_question(self, question_id: str, answer: Mapping[str, Any]) -> bool:
        """Store the answer to an open question whose job is `waiting`; False (nothing changed) otherwise."""
        ...

    def refuse_answer(self, question_id: str, problems: str) -> Question | None:
        """Count an invalid answer to an open question (its `problems` kept); at `max_invalid` it becomes given_up.

        Returns the question as it now is; None (nothing changed) when it was not open or its job not `waiting`.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
