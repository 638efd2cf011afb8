"""The embedded job store: one SQLite file in WAL mode, shared by the front ends and the worker of a data dir.

Every state change is committed before anyone is told about it, so a reader never sees a
state that a crash could take back. Rows are read by column name; the schema carries a
version (`PRAGMA user_version`) and a store written by an older mcp-foundry is upgraded
in place when it is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from builder.errors import InputError
from builder.jobs import procs
from builder.jobs.model import (
    IN_HAND_STATES,
    INTERRUPTED,
    PRIORITIES,
    Job,
    JobCount,
    JobState,
    Question,
    WorkerInfo,
)

SCHEMA_VERSION = 3
"""1: the single-process store (jobs owned by a pid); 2: workers with leases, priorities, cancel requests;
3: questions a job puts to its client."""

_TABLES = [
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL,
        progress REAL NOT NULL, message TEXT NOT NULL, params TEXT NOT NULL, result TEXT, error TEXT,
        created_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL,
        timeout_s REAL NOT NULL, seq INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0, worker TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0, rev INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE IF NOT EXISTS job_logs (job_id TEXT NOT NULL, n INTEGER NOT NULL, ts REAL NOT NULL, "
    "line TEXT NOT NULL, PRIMARY KEY (job_id, n))",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY, host TEXT NOT NULL, boot_id TEXT NOT NULL, pid INTEGER NOT NULL,
        proc_start TEXT NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, lease_s REAL NOT NULL,
        max_jobs INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS questions (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, messages TEXT NOT NULL,
        answer_schema TEXT NOT NULL, answer_model TEXT NOT NULL, turn INTEGER, turns_left INTEGER,
        asked_at REAL NOT NULL, state TEXT NOT NULL, answer TEXT, answered_at REAL,
        invalid_answers INTEGER NOT NULL DEFAULT 0, max_invalid INTEGER NOT NULL, problems TEXT)""",
]
_INDEXES = [
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(state, priority DESC, seq)",
    "CREATE INDEX IF NOT EXISTS jobs_worker ON jobs(worker, state)",
    "CREATE INDEX IF NOT EXISTS questions_job ON questions(job_id, seq)",
]
# Columns added to a version-1 jobs table (which keeps its unused `owner` column).
_V2_COLUMNS = ["priority INTEGER NOT NULL DEFAULT 0", "worker TEXT", "cancel_requested INTEGER NOT NULL DEFAULT 0",
               "rev INTEGER NOT NULL DEFAULT 0"]
_HELD = "('running', 'waiting')"
_OPEN = "('queued', 'running', 'waiting')"
_JOB_WITH_WORKER = ("SELECT j.*, w.id AS w_id, w.host AS w_host, w.boot_id AS w_boot_id, w.pid AS w_pid, "
                    "w.proc_start AS w_proc_start, w.started_at AS w_started_at, w.heartbeat_at AS w_heartbeat_at, "
                    "w.lease_s AS w_lease_s, w.max_jobs AS w_max_jobs FROM jobs j LEFT JOIN workers w ON w.id = j.worker")
MAX_LOG_LINE = 2000
_PRIORITY_NAMES = {rank: name for name, rank in PRIORITIES.items()}


class SqliteJobStore:
    """The SQLite JobStore (see builder.jobs.store); safe to share between threads and between processes."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._writes = 0
        self._seen: tuple[int, int] = (-1, -1)
        self._counter = 0
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # -- plumbing --------------------------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that a read-then-write cannot race."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._writes += 1

    def _write(self, sql: str, args: Iterable[Any]) -> int:
        with self._lock:
            n = self._db.execute(sql, tuple(args)).rowcount
            self._writes += 1
            return n

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            cols = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            if cols and "priority" not in cols:
                for col in _V2_COLUMNS:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {col}")
            for sql in _TABLES + _INDEXES:
                db.execute(sql)
            if "owner" in cols:
                self._adopt_v1_rows(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _adopt_v1_rows(db: sqlite3.Connection) -> None:
        """Carry a version-1 store over: priorities out of params, running jobs under their owner as a worker."""
        db.execute("UPDATE jobs SET priority = CASE json_extract(params, '$.priority') WHEN 'high' THEN 1 "
                   "WHEN 'low' THEN -1 ELSE 0 END")
        host, boot = procs.this_machine()
        now = time.time()
        for row in db.execute("SELECT DISTINCT owner FROM jobs WHERE state = 'running'").fetchall():
            pid_s, _, start = str(row["owner"]).partition(":")
            worker_id = f"v1-{row['owner']}"
            # Its pid and start time tell, as before, whether the process that owns these jobs still runs.
            db.execute("INSERT OR IGNORE INTO workers (id, host, boot_id, pid, proc_start, started_at, heartbeat_at, "
                       "lease_s, max_jobs) VALUES (?,?,?,?,?,?,?,?,?)",
                       (worker_id, host, boot, int(pid_s) if pid_s.isdigit() else 0, start, now, now, 30.0, 0))
            db.execute("UPDATE jobs SET worker = ? WHERE state = 'running' AND owner = ?", (worker_id, row["owner"]))

    @staticmethod
    def _worker_of(row: sqlite3.Row, prefix: str = "") -> WorkerInfo:
        return WorkerInfo(id=row[f"{prefix}id"], host=row[f"{prefix}host"], boot_id=row[f"{prefix}boot_id"],
                          pid=row[f"{prefix}pid"], proc_start=row[f"{prefix}proc_start"],
                          started_at=row[f"{prefix}started_at"], heartbeat_at=row[f"{prefix}heartbeat_at"],
                          lease_s=row[f"{prefix}lease_s"], max_jobs=row[f"{prefix}max_jobs"])

    @staticmethod
    def _job_of(r: sqlite3.Row) -> Job:
        return Job(id=r["id"], kind=r["kind"], state=r["state"], phase=r["phase"], progress=r["progress"],
                   message=r["message"], params=json.loads(r["params"]),
                   result=json.loads(r["result"]) if r["result"] else None, error=r["error"],
                   created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
                   updated_at=r["updated_at"], timeout_s=r["timeout_s"],
                   priority=_PRIORITY_NAMES.get(r["priority"], "normal"), worker=r["worker"],
                   cancel_requested=bool(r["cancel_requested"]), rev=r["rev"])

    def _checked(self, row: sqlite3.Row) -> Job:
        """The job of `row` (read with its worker's columns), first marked interrupted if that worker is dead."""
        if row["state"] in IN_HAND_STATES and (row["w_id"] is None or not procs.alive(self._worker_of(row, "w_"))):
            self._interrupt(row["id"], row["worker"])
            row = self._read(f"{_JOB_WITH_WORKER} WHERE j.id = ?", (row["id"],))[0]
        return self._job_of(row)

    def _interrupt(self, job_id: str, worker_id: str | None) -> bool:
        now = time.time()
        return self._write(
            f"UPDATE jobs SET state = 'interrupted', phase = 'interrupted', error = ?, finished_at = ?, updated_at = ?,"
            f" rev = rev + 1 WHERE id = ? AND state IN {_HELD} AND worker IS ?",
            (INTERRUPTED, now, now, job_id, worker_id)) == 1

    # -- front ends ------------------------------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], *, timeout_s: float, priority: str = "normal") -> Job:
        """Insert a queued job and return it."""
        if priority not in PRIORITIES:
            raise InputError("priority", f"unknown priority {priority!r}", ", ".join(PRIORITIES))
        now = time.time()
        job_id = uuid.uuid4().hex[:12]
        self._write(
            "INSERT INTO jobs (id, kind, state, phase, progress, message, params, created_at, updated_at, timeout_s,"
            " seq, priority) SELECT ?, ?, 'queued', 'queued', 0.0, '', ?, ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ?"
            " FROM jobs",
            (job_id, kind, json.dumps(dict(params)), now, now, timeout_s, PRIORITIES[priority]))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """Return one job; InputError naming `job_id` when it does not exist."""
        rows = self._read(f"{_JOB_WITH_WORKER} WHERE j.id = ?", (job_id,))
        if not rows:
            raise InputError("job_id", f"no job with id {job_id!r}", "an id returned by validate_server, "
                             "request_build or list_builds (on the command line: `mcp-foundry status` lists them)")
        return self._checked(rows[0])

    def list(self, *, state: str | Collection[str] | None = None, kind: str | None = None,
             worker: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first, optionally filtered by state(s), kind and worker."""
        sql, args = f"{_JOB_WITH_WORKER} WHERE 1=1", []
        if state:
            states = [state] if isinstance(state, str) else list(state)
            sql += f" AND j.state IN ({','.join('?' * len(states))})"
            args += states
        if kind:
            sql += " AND j.kind = ?"
            args.append(kind)
        if worker:
            sql += " AND j.worker = ?"
            args.append(worker)
        sql += " ORDER BY j.seq DESC LIMIT ?"
        args.append(limit)
        jobs = [self._checked(r) for r in self._read(sql, args)]
        # A job just found interrupted no longer matches a filter on its held state.
        return [j for j in jobs if not state or j.state in ([state] if isinstance(state, str) else state)]

    def log(self, job_id: str, tail: int | None = None) -> list[str]:
        """A job's log lines, oldest first; only the last `tail` when given."""
        self.get(job_id)
        if tail:
            rows = self._read("SELECT ts, line FROM (SELECT * FROM job_logs WHERE job_id = ? ORDER BY n DESC LIMIT ?)"
                              " ORDER BY n", (job_id, tail))
        else:
            rows = self._read("SELECT ts, line FROM job_logs WHERE job_id = ? ORDER BY n", (job_id,))
        return [f"{time.strftime('%H:%M:%S', time.localtime(r['ts']))} {r['line']}" for r in rows]

    def request_cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running or waiting one is flagged for the worker holding it."""
        self.get(job_id)
        now = time.time()
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET cancel_requested = 1, rev = rev + 1 WHERE id = ? AND state IN {_OPEN}",
                       (job_id,))
            db.execute("UPDATE jobs SET state = 'cancelled', phase = 'cancelled', error = 'cancelled before it "
                       "started', finished_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'",
                       (now, now, job_id))
        return self.get(job_id)

    def changes(self) -> int:
        """Moves whenever this or another connection committed since the last call (PRAGMA data_version)."""
        with self._lock:
            seen = (self._db.execute("PRAGMA data_version").fetchone()[0], self._writes)
            if seen != self._seen:
                self._seen = seen
                self._counter += 1
            return self._counter

    def workers(self) -> list[WorkerInfo]:
        """Live workers, oldest first, with the jobs each holds."""
        now = time.time()
        live = [w for w in map(self._worker_of, self._read("SELECT * FROM workers ORDER BY started_at"))
                if procs.alive(w, now)]
        for w in live:
            w.jobs = [r["id"] for r in self._read(f"SELECT id FROM jobs WHERE worker = ? AND state IN {_HELD} "
                                                  "ORDER BY seq", (w.id,))]
        return live

    def counts(self) -> list[JobCount]:
        """How many jobs there are of each (kind, priority, state), as stored."""
        rows = self._read("SELECT kind, priority, state, count(*) AS n FROM jobs GROUP BY kind, priority, state "
                          "ORDER BY kind, priority DESC, state")
        return [JobCount(kind=r["kind"], priority=_PRIORITY_NAMES.get(r["priority"], "normal"), state=r["state"],
                         n=r["n"]) for r in rows]

    # -- workers ---------------------------------------------------------------------------------------------------
    def register_worker(self, *, max_jobs: int, lease_s: float) -> WorkerInfo:
        """Add this process as a worker."""
        host, boot = procs.this_machine()
        pid = os.getpid()
        now = time.time()
        info = WorkerInfo(id=f"{host}-{pid}-{uuid.uuid4().hex[:6]}", host=host, boot_id=boot, pid=pid,
                          proc_start=procs.proc_start(pid) or "0", started_at=now, heartbeat_at=now, lease_s=lease_s,
                          max_jobs=max_jobs)
        self._write("INSERT INTO workers (id, host, boot_id, pid, proc_start, started_at, heartbeat_at, lease_s, "
                    "max_jobs) VALUES (?,?,?,?,?,?,?,?,?)",
                    (info.id, info.host, info.boot_id, info.pid, info.proc_start, info.started_at, info.heartbeat_at,
                     info.lease_s, info.max_jobs))
        return info

    def heartbeat(self, worker_id: str) -> bool:
        """Renew the lease; False when the worker's row is gone (it was declared dead)."""
        return self._write("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (time.time(), worker_id)) == 1

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a stopping worker."""
        self._write("DELETE FROM workers WHERE id = ?", (worker_id,))

    def reap(self) -> list[str]:
        """Interrupt the held jobs of dead (or unknown) workers and forget the dead workers."""
        now = time.time()
        dead = [w.id for w in map(self._worker_of, self._read("SELECT * FROM workers")) if not procs.alive(w, now)]
        rows = self._read(f"SELECT j.id, j.worker FROM jobs j LEFT JOIN workers w ON w.id = j.worker "
                          f"WHERE j.state IN {_HELD} AND (w.id IS NULL OR j.worker IN ({','.join('?' * len(dead))}))"
                          " ORDER BY j.seq", dead)
        interrupted = [r["id"] for r in rows if self._interrupt(r["id"], r["worker"])]
        for worker_id in dead:
            self.unregister_worker(worker_id)
        return interrupted

    def claim_next(self, worker_id: str, kinds: Iterable[str]) -> Job | None:
        """Take the highest-priority, oldest queued job of `kinds` (only while this worker is registered)."""
        kinds = list(kinds)
        now = time.time()
        with self._tx() as db:
            row = db.execute(f"SELECT id FROM jobs WHERE state = 'queued' AND kind IN ({','.join('?' * len(kinds))})"
                             " AND EXISTS (SELECT 1 FROM workers WHERE id = ?) ORDER BY priority DESC, seq LIMIT 1",
                             (*kinds, worker_id)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', phase = 'starting', started_at = ?, updated_at = ?, "
                       "worker = ?, rev = rev + 1 WHERE id = ? AND state = 'queued'", (now, now, worker_id, row["id"]))
        return self.get(row["id"])

    def update(self, job_id: str, worker_id: str, *, state: JobState | None = None, phase: str | None = None,
               progress: float | None = None, message: str | None = None) -> bool:
        """Change a held job's progress, phase, message or state (running <-> waiting)."""
        if state is not None and state not in IN_HAND_STATES:
            raise ValueError(f"update() moves a job between running and waiting only, not to {state}")
        cols = {k: v for k, v in (("state", state), ("phase", phase), ("progress", progress), ("message", message))
                if v is not None}
        sets = "".join(f"{k} = ?, " for k in cols)
        return self._write(f"UPDATE jobs SET {sets}updated_at = ?, rev = rev + 1 WHERE id = ? AND worker = ? "
                           f"AND state IN {_HELD}", (*cols.values(), time.time(), job_id, worker_id)) == 1

    def append_log(self, job_id: str, line: str) -> None:
        """Append one line to a job's log."""
        with self._tx() as db:
            db.execute("INSERT INTO job_logs (job_id, n, ts, line) SELECT ?, COALESCE(MAX(n), 0) + 1, ?, ? "
                       "FROM job_logs WHERE job_id = ?", (job_id, time.time(), line[:MAX_LOG_LINE], job_id))
            db.execute("UPDATE jobs SET rev = rev + 1 WHERE id = ?", (job_id,))

    def finish(self, job_id: str, state: JobState, *, result: Mapping[str, Any] | None = None,
               error: str | None = None, worker_id: str | None = None) -> bool:
        """Record a final state once; False when the job was already final (or is not held by `worker_id`)."""
        now = time.time()
        guard, args = ("AND worker = ?", (worker_id,)) if worker_id else ("", ())
        return self._write(
            "UPDATE jobs SET state = ?, result = ?, error = ?, finished_at = ?, updated_at = ?, rev = rev + 1,"
            " progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, phase = ?"
            f" WHERE id = ? AND state IN {_OPEN} {guard}",
            (state, json.dumps(result) if result is not None else None, error, now, now, state, state, job_id, *args),
        ) == 1

    def cancel_requests(self, worker_id: str) -> list[str]:
        """Held jobs of this worker with a cancel request."""
        return [r["id"] for r in self._read(f"SELECT id FROM jobs WHERE worker = ? AND state IN {_HELD} "
                                            "AND cancel_requested = 1", (worker_id,))]

    # -- questions -------------------------------------------------------------------------------------------------
    @staticmethod
    def _question_of(r: sqlite3.Row) -> Question:
        return Question(id=r["id"], job_id=r["job_id"], kind=r["kind"], messages=json.loads(r["messages"]),
                        answer_schema=json.loads(r["answer_schema"]), answer_model=r["answer_model"], turn=r["turn"],
                        turns_left=r["turns_left"], asked_at=r["asked_at"], state=r["state"],
                        answer=json.loads(r["answer"]) if r["answer"] is not None else None,
                        answered_at=r["answered_at"], invalid_answers=r["invalid_answers"],
                        max_invalid=r["max_invalid"], problems=r["problems"])

    def ask(self, question: Question, worker_id: str) -> bool:
        """Store an open question of a job this worker holds."""
        q = question
        with self._tx() as db:
            if db.execute(f"UPDATE jobs SET rev = rev + 1 WHERE id = ? AND worker = ? AND state IN {_HELD}",
                          (q.job_id, worker_id)).rowcount != 1:
                return False
            db.execute("INSERT INTO questions (id, job_id, seq, kind, messages, answer_schema, answer_model, turn, "
                       "turns_left, asked_at, state, max_invalid) SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, "
                       "?, ?, ?, 'open', ? FROM questions WHERE job_id = ?",
                       (q.id, q.job_id, q.kind, json.dumps(q.messages), json.dumps(q.answer_schema), q.answer_model,
                        q.turn, q.turns_left, q.asked_at, q.max_invalid, q.job_id))
        return True

    def question(self, question_id: str) -> Question:
        """One question; InputError naming `question_id` when it does not exist."""
        rows = self._read("SELECT * FROM questions WHERE id = ?", (question_id,))
        if not rows:
            raise InputError("question_id", f"no question with id {question_id!r}",
                             "the id of the question that build_status shows for a waiting job")
        return self._question_of(rows[0])

    def open_question(self, job_id: str) -> Question | None:
        """The job's newest question while it is open."""
        rows = self._read("SELECT * FROM questions WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,))
        return self._question_of(rows[0]) if rows and rows[0]["state"] == "open" else None

    def answer_question(self, question_id: str, answer: Mapping[str, Any]) -> bool:
        """Store the answer of an open question whose job waits, and let readers see the change."""
        now = time.time()
        with self._tx() as db:
            changed = db.execute(
                "UPDATE questions SET state = 'answered', answer = ?, answered_at = ? WHERE id = ? AND state = 'open' "
                "AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = questions.job_id AND jobs.state = 'waiting')",
                (json.dumps(dict(answer)), now, question_id)).rowcount == 1
            if changed:
                db.execute("UPDATE jobs SET rev = rev + 1 WHERE id = (SELECT job_id FROM questions WHERE id = ?)",
                           (question_id,))
        return changed

    def refuse_answer(self, question_id: str, problems: str) -> Question | None:
        """Count an invalid answer; the question is given up at its max_invalid-th."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE questions SET invalid_answers = invalid_answers + 1, problems = ?, state = CASE WHEN "
                "invalid_answers + 1 >= max_invalid THEN 'given_up' ELSE 'open' END WHERE id = ? AND state = 'open' "
                "AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = questions.job_id AND jobs.state = 'waiting')",
                (problems, question_id)).rowcount == 1
            if not changed:
                return None
            db.execute("UPDATE jobs SET rev = rev + 1 WHERE id = (SELECT job_id FROM questions WHERE id = ?)",
                       (question_id,))
            row = db.execute("SELECT * FROM questions WHERE id = ?", (question_id,)).fetchone()
        return self._question_of(row)
