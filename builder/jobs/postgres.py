"""The shared job store: PostgreSQL, for workers on many machines (MCP_FOUNDRY_DB_URL=postgresql://...).

Same contract as the SQLite store (builder.jobs.store), with what many machines need:
- Claims take `FOR UPDATE SKIP LOCKED` on the first queued row, so racing workers never
  wait on each other and never take the same job.
- Every time is the database's clock (`now()`), never a machine's: leases, heartbeats and
  the job's timestamps agree whichever machine wrote them. A worker elsewhere is dead once
  its lease has run out by that clock; one on this machine (same host and boot id) is
  checked by its pid at once, as in the SQLite store.
- `changes()` listens on a channel (LISTEN/NOTIFY) that a trigger notifies on every
  committed change, so waiting front ends poll a socket, not the database.
- The schema is created and upgraded by the program (builder.jobs.pg_schema).

One connection per store, used by one thread at a time (a lock), in autocommit mode;
multi-statement changes run in explicit transactions. A connection that broke (the
server restarted) is opened again on the next call.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from builder.errors import InputError
from builder.jobs import pg_schema, procs
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

if TYPE_CHECKING:
    import psycopg

MAX_LOG_LINE = 2000
_NOW = "EXTRACT(EPOCH FROM now())::float8"
_HELD = "('running', 'waiting')"
_OPEN = "('queued', 'running', 'waiting')"
_W_COLS = ("id", "host", "boot_id", "pid", "proc_start", "started_at", "heartbeat_at", "lease_s", "max_jobs")
_JOB_WITH_WORKER = ("SELECT j.*, " + ", ".join(f"w.{c} AS w_{c}" for c in _W_COLS) + f", {_NOW} AS db_now "
                    "FROM jobs j LEFT JOIN workers w ON w.id = j.worker")
_PRIORITY_NAMES = {rank: name for name, rank in PRIORITIES.items()}
URL_SCHEMES = ("postgresql", "postgres")


def mask_url(url: str) -> str:
    """The URL with its password replaced by *** (for doctor, logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise InputError("MCP_FOUNDRY_DB_URL", "a PostgreSQL job store needs the psycopg package, which is not "
                         "installed", "install the extra: pip install 'mcp-foundry[postgres]'; or unset the "
                         "variable to use the embedded SQLite store") from None
    return psycopg


class PostgresJobStore:
    """The PostgreSQL JobStore (see builder.jobs.store); safe to share between threads of one process."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10):
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._db = self._connect()
        with self._lock:
            pg_schema.migrate(self._db)
            self._db.execute(f"SET search_path TO {pg_schema.SCHEMA}")
        self._listen: psycopg.Connection | None = None
        self._listen_lock = threading.Lock()
        self._counter = 0

    @property
    def where(self) -> str:
        """The store as shown to people: the URL with its password masked."""
        return mask_url(self.url)

    def _connect(self) -> psycopg.Connection:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=max(1, int(self.connect_timeout_s)),
                                   application_name="mcp-foundry")
        except psycopg.Error as e:
            raise InputError("MCP_FOUNDRY_DB_URL", f"cannot connect to the job store {self.where}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
                             "the URL of a reachable PostgreSQL, postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
                             "(the database must exist; its tables are created on first use)") from None
        return conn

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            self._db.close()
        with self._listen_lock:
            if self._listen is not None:
                self._listen.close()

    def schema_version(self) -> int:
        """The version of the store's schema (the last migration applied)."""
        with self._lock:
            return pg_schema.current_version(self._conn())

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection:
        """The connection, opened again if the server dropped it (callers hold `_lock`)."""
        if self._db.closed or self._db.broken:
            self._db = self._connect()
            self._db.execute(f"SET search_path TO {pg_schema.SCHEMA}")
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                yield conn

    def _write(self, sql: str, args: Iterable[Any] = ()) -> int:
        with self._lock:
            return self._conn().execute(sql, tuple(args)).rowcount

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._conn().execute(sql, tuple(args)).fetchall()

    @staticmethod
    def _worker_of(row: Mapping[str, Any], prefix: str = "") -> WorkerInfo:
        return WorkerInfo(**{c: row[f"{prefix}{c}"] for c in _W_COLS})

    @staticmethod
    def _job_of(r: Mapping[str, Any]) -> Job:
        return Job(id=r["id"], kind=r["kind"], state=r["state"], phase=r["phase"], progress=r["progress"],
                   message=r["message"], params=r["params"], result=r["result"], error=r["error"],
                   created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
                   updated_at=r["updated_at"], timeout_s=r["timeout_s"],
                   priority=_PRIORITY_NAMES.get(r["priority"], "normal"), worker=r["worker"],
                   cancel_requested=r["cancel_requested"], rev=r["rev"])

    def _checked(self, row: Mapping[str, Any]) -> Job:
        """The job of `row`, first marked interrupted if the worker holding it is dead."""
        if row["state"] in IN_HAND_STATES and (
                row["w_id"] is None or not procs.alive(self._worker_of(row, "w_"), row["db_now"])):
            self._interrupt(row["id"], row["worker"])
            row = self._read(f"{_JOB_WITH_WORKER} WHERE j.id = %s", (row["id"],))[0]
        return self._job_of(row)

    def _interrupt(self, job_id: str, worker_id: str | None) -> bool:
        return self._write(
            f"UPDATE jobs SET state = 'interrupted', phase = 'interrupted', error = %s, finished_at = {_NOW}, "
            f"updated_at = {_NOW}, rev = rev + 1 WHERE id = %s AND state IN {_HELD} "
            "AND worker IS NOT DISTINCT FROM %s", (INTERRUPTED, job_id, worker_id)) == 1

    # -- front ends ------------------------------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], *, timeout_s: float, priority: str = "normal") -> Job:
        """Insert a queued job and return it."""
        from psycopg.types.json import Jsonb

        if priority not in PRIORITIES:
            raise InputError("priority", f"unknown priority {priority!r}", ", ".join(PRIORITIES))
        job_id = uuid.uuid4().hex[:12]
        self._write(f"INSERT INTO jobs (id, kind, state, phase, params, created_at, updated_at, timeout_s, priority) "
                    f"VALUES (%s, %s, 'queued', 'queued', %s, {_NOW}, {_NOW}, %s, %s)",
                    (job_id, kind, Jsonb(dict(params)), timeout_s, PRIORITIES[priority]))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """Return one job; InputError naming `job_id` when it does not exist."""
        rows = self._read(f"{_JOB_WITH_WORKER} WHERE j.id = %s", (job_id,))
        if not rows:
            raise InputError("job_id", f"no job with id {job_id!r}", "an id returned by validate_server, "
                             "request_build or list_builds (on the command line: `mcp-foundry status` lists them)")
        return self._checked(rows[0])

    def list(self, *, state: str | Collection[str] | None = None, kind: str | None = None,
             worker: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first, optionally filtered by state(s), kind and worker."""
        states = None if not state else [state] if isinstance(state, str) else [str(s) for s in state]
        sql, args = f"{_JOB_WITH_WORKER} WHERE true", []
        for cond, value in (("j.state = ANY(%s)", states), ("j.kind = %s", kind), ("j.worker = %s", worker)):
            if value:
                sql += f" AND {cond}"
                args.append(value)
        jobs = [self._checked(r) for r in self._read(f"{sql} ORDER BY j.seq DESC LIMIT %s", [*args, limit])]
        # A job just found interrupted no longer matches a filter on its held state.
        return [j for j in jobs if not states or j.state in states]

    def log(self, job_id: str, tail: int | None = None) -> list[str]:
        """A job's log lines, oldest first; only the last `tail` when given."""
        self.get(job_id)
        rows = self._read("SELECT ts, line FROM (SELECT ts, line, n FROM job_logs WHERE job_id = %s "
                          "ORDER BY n DESC LIMIT %s) t ORDER BY n", (job_id, tail or None))
        return [f"{time.strftime('%H:%M:%S', time.localtime(r['ts']))} {r['line']}" for r in rows]

    def request_cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running or waiting one is flagged for the worker holding it."""
        self.get(job_id)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET cancel_requested = true, rev = rev + 1 WHERE id = %s AND state IN {_OPEN}",
                       (job_id,))
            db.execute(f"UPDATE jobs SET state = 'cancelled', phase = 'cancelled', error = 'cancelled before it "
                       f"started', finished_at = {_NOW}, updated_at = {_NOW} WHERE id = %s AND state = 'queued'",
                       (job_id,))
        return self.get(job_id)

    def changes(self) -> int:
        """Moves whenever a change was committed by anyone since the last call (notifications on a channel)."""
        with self._listen_lock:
            try:
                if self._listen is None or self._listen.closed or self._listen.broken:
                    self._listen = self._connect()
                    self._listen.execute(f"LISTEN {pg_schema.CHANNEL}")
                    self._counter += 1  # changes may have been missed while nobody listened
                pg = self._listen.pgconn
                pg.consume_input()  # libpq's socket is non-blocking: this reads only what has arrived
                got = False
                while pg.notifies() is not None:
                    got = True
                if got:
                    self._counter += 1
            except Exception:  # a broken listener: say "changed" and listen again next time
                if self._listen is not None:
                    self._listen.close()
                self._counter += 1
            return self._counter

    def workers(self) -> list[WorkerInfo]:
        """Live workers, oldest first, with the jobs each holds."""
        rows = self._read(f"SELECT w.*, {_NOW} AS db_now, ARRAY(SELECT j.id FROM jobs j WHERE j.worker = w.id AND "
                          f"j.state IN {_HELD} ORDER BY j.seq) AS held FROM workers w ORDER BY w.started_at")
        live = []
        for r in rows:
            w = self._worker_of(r)
            if procs.alive(w, r["db_now"]):
                w.jobs = list(r["held"])
                live.append(w)
        return live

    def counts(self) -> list[JobCount]:
        """How many jobs there are of each (kind, priority, state), as stored."""
        rows = self._read("SELECT kind, priority, state, count(*) AS n FROM jobs GROUP BY kind, priority, state "
                          "ORDER BY kind, priority DESC, state")
        return [JobCount(kind=r["kind"], priority=_PRIORITY_NAMES.get(r["priority"], "normal"), state=r["state"],
                         n=r["n"]) for r in rows]

    # -- workers ---------------------------------------------------------------------------------------------------
    def register_worker(self, *, max_jobs: int, lease_s: float) -> WorkerInfo:
        """Add this process as a worker; its timestamps are the database's."""
        host, boot = procs.this_machine()
        pid = os.getpid()
        worker_id = f"{host}-{pid}-{uuid.uuid4().hex[:6]}"
        with self._lock:
            row = self._conn().execute(
                f"INSERT INTO workers (id, host, boot_id, pid, proc_start, started_at, heartbeat_at, lease_s, "
                f"max_jobs) VALUES (%s, %s, %s, %s, %s, {_NOW}, {_NOW}, %s, %s) RETURNING *",
                (worker_id, host, boot, pid, procs.proc_start(pid) or "0", lease_s, max_jobs)).fetchone()
        return self._worker_of(row)

    def heartbeat(self, worker_id: str) -> bool:
        """Renew the lease by the database's clock; False when the worker's row is gone (it was declared dead)."""
        return self._write(f"UPDATE workers SET heartbeat_at = {_NOW} WHERE id = %s", (worker_id,)) == 1

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a stopping worker."""
        self._write("DELETE FROM workers WHERE id = %s", (worker_id,))

    def reap(self) -> list[str]:
        """Interrupt the held jobs of dead (or unknown) workers and forget the dead workers, in one transaction."""
        host, boot = procs.this_machine()
        # Workers on this machine are judged by their pid (at once); the others by their lease, in SQL below.
        here = self._read("SELECT * FROM workers WHERE host = %s AND boot_id = %s AND boot_id <> ''", (host, boot))
        gone_here = [w.id for w in map(self._worker_of, here) if procs.proc_start(w.pid) != w.proc_start]
        with self._tx() as db:
            # Deleting first waits for a claim in flight (it holds the worker's row FOR KEY SHARE), so the job it
            # claimed is seen below and interrupted.
            db.execute(f"DELETE FROM workers WHERE id = ANY(%s) OR (heartbeat_at + lease_s < {_NOW} "
                       "AND NOT (host = %s AND boot_id = %s AND boot_id <> ''))", (gone_here, host, boot))
            rows = db.execute(
                f"UPDATE jobs SET state = 'interrupted', phase = 'interrupted', error = %s, finished_at = {_NOW}, "
                f"updated_at = {_NOW}, rev = rev + 1 WHERE state IN {_HELD} AND (worker IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM workers w WHERE w.id = jobs.worker)) RETURNING id, seq", (INTERRUPTED,)).fetchall()
        return [r["id"] for r in sorted(rows, key=lambda r: r["seq"])]

    def claim_next(self, worker_id: str, kinds: Iterable[str]) -> Job | None:
        """Take the highest-priority, oldest queued job of `kinds`, skipping rows other workers are claiming."""
        with self._lock:
            row = self._conn().execute(
                f"UPDATE jobs SET state = 'running', phase = 'starting', started_at = {_NOW}, updated_at = {_NOW}, "
                "worker = %s, rev = rev + 1 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND kind = ANY(%s) "
                "AND EXISTS (SELECT 1 FROM workers WHERE id = %s FOR KEY SHARE) "
                "ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED) AND state = 'queued' RETURNING id",
                (worker_id, list(kinds), worker_id)).fetchone()
        return None if row is None else self.get(row["id"])

    def update(self, job_id: str, worker_id: str, *, state: JobState | None = None, phase: str | None = None,
               progress: float | None = None, message: str | None = None) -> bool:
        """Change a held job's progress, phase, message or state (running <-> waiting)."""
        if state is not None and state not in IN_HAND_STATES:
            raise ValueError(f"update() moves a job between running and waiting only, not to {state}")
        cols = {k: v for k, v in (("state", state), ("phase", phase), ("progress", progress), ("message", message))
                if v is not None}
        sets = "".join(f"{k} = %s, " for k in cols)
        return self._write(f"UPDATE jobs SET {sets}updated_at = {_NOW}, rev = rev + 1 WHERE id = %s AND worker = %s "
                           f"AND state IN {_HELD}", (*[str(v) if k == "state" else v for k, v in cols.items()],
                                                    job_id, worker_id)) == 1

    def append_log(self, job_id: str, line: str) -> None:
        """Append one line to a job's log (numbered under the job's row lock, so concurrent writers never clash)."""
        self._write(f"WITH j AS (UPDATE jobs SET rev = rev + 1, log_lines = log_lines + 1 WHERE id = %s "
                    f"RETURNING log_lines) INSERT INTO job_logs (job_id, n, ts, line) SELECT %s, log_lines, {_NOW}, "
                    "%s FROM j", (job_id, job_id, line[:MAX_LOG_LINE].replace("\x00", "")))

    def finish(self, job_id: str, state: JobState, *, result: Mapping[str, Any] | None = None,
               error: str | None = None, worker_id: str | None = None) -> bool:
        """Record a final state once; False when the job was already final (or is not held by `worker_id`)."""
        from psycopg.types.json import Jsonb

        guard, args = ("AND worker = %s", (worker_id,)) if worker_id else ("", ())
        return self._write(
            f"UPDATE jobs SET state = %s, result = %s, error = %s, finished_at = {_NOW}, updated_at = {_NOW}, "
            "rev = rev + 1, progress = CASE WHEN %s = 'succeeded' THEN 1.0 ELSE progress END, phase = %s "
            f"WHERE id = %s AND state IN {_OPEN} {guard}",
            (str(state), Jsonb(dict(result)) if result is not None else None, error, str(state), str(state), job_id,
             *args)) == 1

    def cancel_requests(self, worker_id: str) -> list[str]:
        """Held jobs of this worker with a cancel request."""
        return [r["id"] for r in self._read(f"SELECT id FROM jobs WHERE worker = %s AND state IN {_HELD} "
                                            "AND cancel_requested ORDER BY seq", (worker_id,))]

    # -- questions -------------------------------------------------------------------------------------------------
    @staticmethod
    def _question_of(r: Mapping[str, Any]) -> Question:
        return Question(id=r["id"], job_id=r["job_id"], kind=r["kind"], messages=r["messages"],
                        answer_schema=r["answer_schema"], answer_model=r["answer_model"], turn=r["turn"],
                        turns_left=r["turns_left"], asked_at=r["asked_at"], state=r["state"], answer=r["answer"],
                        answered_at=r["answered_at"], invalid_answers=r["invalid_answers"],
                        max_invalid=r["max_invalid"], problems=r["problems"])

    def ask(self, question: Question, worker_id: str) -> bool:
        """Store an open question of a job this worker holds."""
        from psycopg.types.json import Jsonb

        q = question
        with self._tx() as db:
            held = db.execute(f"UPDATE jobs SET rev = rev + 1 WHERE id = %s AND worker = %s AND state IN {_HELD}",
                              (q.job_id, worker_id)).rowcount == 1
            if not held:
                return False
            db.execute("INSERT INTO questions (id, job_id, seq, kind, messages, answer_schema, answer_model, turn, "
                       "turns_left, asked_at, state, max_invalid) SELECT %s, %s, COALESCE(MAX(seq), 0) + 1, %s, %s, "
                       "%s, %s, %s, %s, %s, 'open', %s FROM questions WHERE job_id = %s",
                       (q.id, q.job_id, q.kind, Jsonb(q.messages), Jsonb(q.answer_schema), q.answer_model, q.turn,
                        q.turns_left, q.asked_at, q.max_invalid, q.job_id))
        return True

    def question(self, question_id: str) -> Question:
        """One question; InputError naming `question_id` when it does not exist."""
        rows = self._read("SELECT * FROM questions WHERE id = %s", (question_id,))
        if not rows:
            raise InputError("question_id", f"no question with id {question_id!r}",
                             "the id of the question that build_status shows for a waiting job")
        return self._question_of(rows[0])

    def open_question(self, job_id: str) -> Question | None:
        """The job's newest question while it is open."""
        rows = self._read("SELECT * FROM questions WHERE job_id = %s ORDER BY seq DESC LIMIT 1", (job_id,))
        return self._question_of(rows[0]) if rows and rows[0]["state"] == "open" else None

    def answer_question(self, question_id: str, answer: Mapping[str, Any]) -> bool:
        """Store the answer of an open question whose job waits, and let readers see the change."""
        from psycopg.types.json import Jsonb

        with self._tx() as db:
            row = db.execute(
                f"UPDATE questions q SET state = 'answered', answer = %s, answered_at = {_NOW} WHERE q.id = %s "
                "AND q.state = 'open' AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = q.job_id AND j.state = 'waiting') "
                "RETURNING q.job_id", (Jsonb(dict(answer)), question_id)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE jobs SET rev = rev + 1 WHERE id = %s", (row["job_id"],))
        return True

    def refuse_answer(self, question_id: str, problems: str) -> Question | None:
        """Count an invalid answer; the question is given up at its max_invalid-th."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE questions q SET invalid_answers = invalid_answers + 1, problems = %s, state = CASE WHEN "
                "invalid_answers + 1 >= max_invalid THEN 'given_up' ELSE 'open' END WHERE q.id = %s AND "
                "q.state = 'open' AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = q.job_id AND j.state = 'waiting') "
                "RETURNING *", (problems, question_id)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET rev = rev + 1 WHERE id = %s", (row["job_id"],))
        return self._question_of(row)


class AdvisoryLock:
    """A PostgreSQL advisory lock named by a string, held on a connection of its own (reused between holds).

    Used as the knowledge repository's write lock when it lives on object storage: every
    worker already reaches the job store's database, so they can all take the same lock.
    If the connection drops while the lock is held, the server releases it.
    """

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def __call__(self) -> AdvisoryLock:
        return self

    def __enter__(self) -> AdvisoryLock:
        self._lock.acquire()
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = _psycopg().connect(self.url, autocommit=True, application_name="mcp-foundry lock")
            self._conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (self.name,))
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._conn is not None and not self._conn.broken:
                self._conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.name,))
        finally:
            self._lock.release()
