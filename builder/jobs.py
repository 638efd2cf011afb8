"""Durable jobs: a SQLite (WAL) job store and a bounded worker pool (FIFO within a priority) that serves every kind of job.

Every state change is committed to the store before anyone is told about it, so a
reader never sees a state that a crash could take back. A job row carries the pid and
start time of the process that owns it; the next process to open the store marks the
running jobs of dead owners `interrupted` and takes over their queued jobs.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from builder.errors import BuildError, InputError


class JobState(StrEnum):
    """Where a job is in its life; the last four are final."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


FINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled, JobState.interrupted})


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL,
    progress REAL NOT NULL, message TEXT NOT NULL, params TEXT NOT NULL, result TEXT, error TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL,
    timeout_s REAL NOT NULL, owner TEXT NOT NULL, seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
CREATE TABLE IF NOT EXISTS job_logs (
    job_id TEXT NOT NULL, n INTEGER NOT NULL, ts REAL NOT NULL, line TEXT NOT NULL, PRIMARY KEY (job_id, n)
);
"""

MAX_LOG_LINE = 2000
INTERRUPTED = ("interrupted: the mcp-foundry process running this job stopped before it finished (crash, kill or "
               "shutdown); start it again to retry")
PRIORITIES = {"low": -1, "normal": 0, "high": 1}
"""A job's params["priority"] -> its rank in the queue; equal ranks run in arrival order."""
log = logging.getLogger("mcp_foundry.jobs")


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (None if it does not exist or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def process_identity(pid: int | None = None) -> str:
    """An owner tag that a recycled pid cannot impersonate: "<pid>:<start time>"."""
    pid = pid or os.getpid()
    return f"{pid}:{_proc_start(pid) or 0}"


def _owner_alive(owner: str) -> bool:
    pid_s, _, start = owner.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    return _proc_start(pid) == start


class JobStore:
    """SQLite job store; safe to share between threads and between processes (WAL)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.owner = process_identity()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def create(self, kind: str, params: Mapping[str, Any], timeout_s: float) -> Job:
        """Insert a queued job and return it."""
        now = time.time()
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._db.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, kind, JobState.queued, "queued", 0.0, "", json.dumps(dict(params)), None, None,
                 now, None, None, now, timeout_s, self.owner, seq),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """Return one job; InputError naming `job_id` when it does not exist."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InputError("job_id", f"no job with id {job_id!r}", "an id returned by validate_server, "
                             "request_build or list_builds (on the command line: `mcp-foundry status` lists them)")
        return self._checked(row)

    def list(self, *, state: str | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first, optionally filtered by state and kind."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if state:
            sql += " AND state = ?"
            args.append(state)
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._checked(r) for r in rows]

    def _checked(self, row: tuple[Any, ...]) -> Job:
        """The job of `row`, marked interrupted first if it is running in a process that has died since."""
        job_id, state, owner = row[0], row[2], row[14]
        if state == JobState.running and owner != self.owner and not _owner_alive(owner):
            self.finish(job_id, JobState.interrupted, error=INTERRUPTED)
            with self._lock:
                row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row)

    def claim(self, job_id: str) -> bool:
        """Move a queued job to running; False if it is no longer queued (cancelled meanwhile)."""
        now = time.time()
        return self._write(
            "UPDATE jobs SET state=?, phase='starting', started_at=?, updated_at=?, owner=? WHERE id=? AND state=?",
            (JobState.running, now, now, self.owner, job_id, JobState.queued),
        ) == 1

    def update(self, job_id: str, **fields: Any) -> None:
        """Set progress/phase/message of a running job."""
        cols = {k: v for k, v in fields.items() if k in ("phase", "progress", "message")}
        sets = ", ".join(f"{k} = ?" for k in cols)
        self._write(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ? AND state = ?",
                    (*cols.values(), time.time(), job_id, JobState.running))

    def finish(self, job_id: str, state: JobState, *, result: Mapping[str, Any] | None = None,
               error: str | None = None) -> bool:
        """Record a final state once; False when the job was already final."""
        now = time.time()
        return self._write(
            "UPDATE jobs SET state=?, result=?, error=?, finished_at=?, updated_at=?,"
            " progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, phase=?"
            " WHERE id=? AND state IN ('queued', 'running')",
            (state, json.dumps(result) if result is not None else None, error, now, now, state, state, job_id),
        ) == 1

    def append_log(self, job_id: str, line: str) -> None:
        """Append one line to a job's log."""
        with self._lock:
            n = self._db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM job_logs WHERE job_id=?", (job_id,)).fetchone()[0]
            self._db.execute("INSERT INTO job_logs VALUES (?,?,?,?)", (job_id, n, time.time(), line[:MAX_LOG_LINE]))

    def log(self, job_id: str, tail: int | None = None) -> list[str]:
        """A job's log lines, oldest first; only the last `tail` when given."""
        self.get(job_id)
        with self._lock:
            if tail:
                rows = self._db.execute("SELECT ts, line FROM (SELECT * FROM job_logs WHERE job_id=? ORDER BY n DESC"
                                        " LIMIT ?) ORDER BY n", (job_id, tail)).fetchall()
            else:
                rows = self._db.execute("SELECT ts, line FROM job_logs WHERE job_id=? ORDER BY n", (job_id,)).fetchall()
        return [f"{time.strftime('%H:%M:%S', time.localtime(ts))} {line}" for ts, line in rows]

    def recover(self) -> tuple[list[str], list[str]]:
        """Mark running jobs of dead owners interrupted; adopt their queued jobs. Returns (interrupted, adopted)."""
        with self._lock:
            rows = self._db.execute("SELECT id, state, owner FROM jobs WHERE state IN ('queued','running')"
                                    " ORDER BY seq").fetchall()
        interrupted, adopted = [], []
        for job_id, state, owner in rows:
            if owner == self.owner or _owner_alive(owner):
                continue
            if state == JobState.running:
                self.finish(job_id, JobState.interrupted, error=INTERRUPTED)
                interrupted.append(job_id)
            elif self._write("UPDATE jobs SET owner=? WHERE id=? AND owner=?", (self.owner, job_id, owner)) == 1:
                adopted.append(job_id)
        return interrupted, adopted

    @staticmethod
    def _row(r: tuple[Any, ...]) -> Job:
        return Job(id=r[0], kind=r[1], state=r[2], phase=r[3], progress=r[4], message=r[5], params=json.loads(r[6]),
                   result=json.loads(r[7]) if r[7] else None, error=r[8], created_at=r[9], started_at=r[10],
                   finished_at=r[11], updated_at=r[12], timeout_s=r[13])


class JobContext:
    """What a running job's handler sees: its id and params, a durable log and progress reporting."""

    def __init__(self, runner: JobRunner, job: Job):
        self.job_id = job.id
        self.kind = job.kind
        self.params = job.params
        self._runner = runner

    def log(self, line: str) -> None:
        """Append a line to the job's log (stored before watchers are told)."""
        self._runner.store.append_log(self.job_id, line)
        log.info("[%s %s] %s", self.kind, self.job_id, line)
        self._runner._announce(self.job_id)

    def progress(self, fraction: float, phase: str, message: str = "") -> None:
        """Report progress 0..1 in a named phase."""
        fraction = min(1.0, max(0.0, fraction))
        self._runner.store.update(self.job_id, progress=fraction, phase=phase, message=message[:500])
        self._runner._announce(self.job_id)


Handler = Callable[[JobContext], Awaitable[BaseModel | Mapping[str, Any]]]


class JobRunner:
    """A bounded pool of workers running queued jobs, high priority first, FIFO within a priority (async with)."""

    def __init__(self, store: JobStore, handlers: Mapping[str, Handler], *, max_concurrent: int = 2,
                 default_timeout_s: float = 1800):
        self.store = store
        self.handlers = dict(handlers)
        self.max_concurrent = max_concurrent
        self.default_timeout_s = default_timeout_s
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._changed: dict[str, anyio.Event] = {}
        # Highest priority first, then first come, first served: (-priority, arrival, job id).
        self._queue: list[tuple[int, int, str]] = []
        self._arrivals = itertools.count()
        self._ready = anyio.Semaphore(0)
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> JobRunner:
        _, adopted = self.store.recover()
        for job_id in adopted:
            self._enqueue(job_id, self.store.get(job_id).params)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for _ in range(self.max_concurrent):
            self._tg.start_soon(self._worker)
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc)

    def submit(self, kind: str, params: Mapping[str, Any], *, timeout_s: float | None = None) -> Job:
        """Queue a job and return it at once."""
        if kind not in self.handlers:
            raise InputError("kind", f"unknown job kind {kind!r}", ", ".join(sorted(self.handlers)))
        job = self.store.create(kind, params, timeout_s or self.default_timeout_s)
        log.info("[%s %s] queued: %s", kind, job.id, json.dumps(dict(params))[:500])
        self._enqueue(job.id, params)
        return job

    def _enqueue(self, job_id: str, params: Mapping[str, Any]) -> None:
        priority = PRIORITIES.get(str(params.get("priority", "normal")), 0)
        heapq.heappush(self._queue, (-priority, next(self._arrivals), job_id))
        self._ready.release()

    async def cancel(self, job_id: str, *, wait_s: float = 30) -> Job:
        """Cancel a queued or running job and return it once it has unwound (final jobs are left as they are).

        A running job's sandboxed processes are stopped and its handler's cleanup runs
        (a build removes what it deployed) before the job is marked cancelled, so that a
        caller who sees `cancelled` never sees the job's leftovers.
        """
        job = self.store.get(job_id)
        if job.state == JobState.queued:
            self.store.finish(job_id, JobState.cancelled, error="cancelled before it started")
        elif job.state == JobState.running:
            scope = self._scopes.get(job_id)
            if scope is None:
                raise BuildError(f"job {job_id} runs in another mcp-foundry process; cancel it there")
            scope.cancel()
            self._announce(job_id)
            return await self.wait(job_id, wait_s)
        self._announce(job_id)
        return self.store.get(job_id)

    async def wait(self, job_id: str, timeout_s: float, on_change: Callable[[Job], Awaitable[None]] | None = None
                   ) -> Job:
        """Wait until the job is final or `timeout_s` passes, calling `on_change` on each update."""
        job = self.store.get(job_id)
        with anyio.move_on_after(timeout_s):
            while not job.final:
                event = self._changed.setdefault(job_id, anyio.Event())
                # Another process may own the job, so poll as well as listen.
                with anyio.move_on_after(1.0):
                    await event.wait()
                job = self.store.get(job_id)
                if on_change:
                    await on_change(job)
        return job

    def _announce(self, job_id: str) -> None:
        event = self._changed.pop(job_id, None)
        if event:
            event.set()

    async def _worker(self) -> None:
        while True:
            await self._ready.acquire()
            _, _, job_id = heapq.heappop(self._queue)
            await self._run(job_id)

    async def _run(self, job_id: str) -> None:
        if not self.store.claim(job_id):
            return
        job = self.store.get(job_id)
        ctx = JobContext(self, job)
        log.info("[%s %s] started", job.kind, job_id)
        self._announce(job_id)
        scope = anyio.CancelScope()
        self._scopes[job_id] = scope
        try:
            with scope:
                with anyio.fail_after(job.timeout_s):
                    out = await self.handlers[job.kind](ctx)
                result = out.model_dump(mode="json") if isinstance(out, BaseModel) else dict(out)
                self.store.finish(job_id, _result_state(result), result=result,
                                  error=result.get("error") if isinstance(result.get("error"), str) else None)
        except TimeoutError:
            ctx.log(f"timed out after {job.timeout_s:g} s")
            self.store.finish(job_id, JobState.failed, error=f"timed out after {job.timeout_s:g} s (the job's "
                              "timeout_s); raise it or simplify the request")
        except Exception as e:  # a handler's failure ends its job, never the worker
            ctx.log(f"failed: {type(e).__name__}: {e}")
            self.store.finish(job_id, JobState.failed, error=f"{type(e).__name__}: {e}")
        finally:
            self._scopes.pop(job_id, None)
            if scope.cancel_called:
                self.store.finish(job_id, JobState.cancelled, error="cancelled by request")
            # Still running here means the runner itself is shutting down: say so now rather than at next start.
            self.store.finish(job_id, JobState.interrupted, error="interrupted: mcp-foundry shut down while this "
                              "job ran; start it again to retry")
            final = self.store.get(job_id)
            log.info("[%s %s] %s%s", final.kind, job_id, final.state, f": {final.error}" if final.error else "")
            self._announce(job_id)


def _result_state(result: Mapping[str, Any]) -> JobState:
    """A handler reports an unsuccessful outcome with ok=False (the job still has a result)."""
    return JobState.failed if result.get("ok") is False else JobState.succeeded
