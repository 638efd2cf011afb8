"""The PostgreSQL job store's schema: an ordered list of migrations, applied by the program, never by hand.

Everything lives in its own PostgreSQL schema (`mcp_foundry`), so the store can share a
database with other applications. `schema_migrations` records each migration applied
(version, name, when). Opening a store applies the missing ones in one transaction under
an advisory lock, so several workers starting at once upgrade it exactly once; a store
written by a newer mcp-foundry (a version this program does not know) is refused rather
than guessed at.

To change the schema, append a `Migration` with the next version; never edit one that
has shipped. Each is a list of SQL statements run in order, in the same transaction as
the others being applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = "mcp_foundry"
"""The PostgreSQL schema (namespace) holding the job store's tables."""
CHANNEL = "mcp_foundry_jobs"
"""LISTEN/NOTIFY channel: a notification on every committed change of a job, a log or a worker."""
_LOCK_KEY = 0x6D6370666F756E64  # "mcpfound": the advisory lock taken while migrating


@dataclass(frozen=True)
class Migration:
    """One step of the schema: its version (1, 2, ...), a short name, and the statements that make it."""

    version: int
    name: str
    statements: Sequence[str]


MIGRATIONS: list[Migration] = [
    Migration(1, "jobs, their logs, and workers with leases", [
        """CREATE TABLE jobs (
            id text PRIMARY KEY, kind text NOT NULL, state text NOT NULL, phase text NOT NULL,
            progress double precision NOT NULL DEFAULT 0, message text NOT NULL DEFAULT '',
            params jsonb NOT NULL, result jsonb, error text,
            created_at double precision NOT NULL, started_at double precision, finished_at double precision,
            updated_at double precision NOT NULL, timeout_s double precision NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY, priority smallint NOT NULL DEFAULT 0, worker text,
            cancel_requested boolean NOT NULL DEFAULT false, rev bigint NOT NULL DEFAULT 0,
            log_lines integer NOT NULL DEFAULT 0)""",
        # The queue: claim_next reads only queued rows, best priority first, then arrival order.
        "CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'queued'",
        "CREATE INDEX jobs_held ON jobs (worker) WHERE state IN ('running', 'waiting')",
        "CREATE INDEX jobs_seq ON jobs (seq DESC)",
        """CREATE TABLE job_logs (
            job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, n integer NOT NULL,
            ts double precision NOT NULL, line text NOT NULL, PRIMARY KEY (job_id, n))""",
        """CREATE TABLE workers (
            id text PRIMARY KEY, host text NOT NULL, boot_id text NOT NULL, pid integer NOT NULL,
            proc_start text NOT NULL, started_at double precision NOT NULL,
            heartbeat_at double precision NOT NULL, lease_s double precision NOT NULL, max_jobs integer NOT NULL)""",
        # One notification per committing transaction (identical ones are folded by PostgreSQL).
        f"""CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$""",
        *[f"CREATE TRIGGER {t}_changed AFTER INSERT OR UPDATE OR DELETE ON {t} "
          "FOR EACH STATEMENT EXECUTE FUNCTION notify_change()" for t in ("jobs", "job_logs", "workers")],
    ]),
    Migration(2, "questions a waiting job puts to its client", [
        """CREATE TABLE questions (
            id text PRIMARY KEY, job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, seq integer NOT NULL,
            kind text NOT NULL, messages jsonb NOT NULL, answer_schema jsonb NOT NULL, answer_model text NOT NULL,
            turn integer, turns_left integer, asked_at double precision NOT NULL, state text NOT NULL,
            answer jsonb, answered_at double precision, invalid_answers integer NOT NULL DEFAULT 0,
            max_invalid integer NOT NULL, problems text, UNIQUE (job_id, seq))""",
        "CREATE TRIGGER questions_changed AFTER INSERT OR UPDATE OR DELETE ON questions "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_change()",
    ]),
]


class NewerSchemaError(RuntimeError):
    """The store was written by a newer mcp-foundry."""


def current_version(conn: Any) -> int:
    """The highest migration applied to the store behind `conn` (0 for an empty database)."""
    row = conn.execute("SELECT to_regclass(%s) AS t", (f"{SCHEMA}.schema_migrations",)).fetchone()
    if _get(row, "t") is None:
        return 0
    row = conn.execute(f"SELECT COALESCE(MAX(version), 0) AS v FROM {SCHEMA}.schema_migrations").fetchone()
    return int(_get(row, "v"))


def migrate(conn: Any, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the schema up to the last of `migrations` in one transaction; returns the versions applied.

    `conn` is a psycopg connection in autocommit mode. Raises NewerSchemaError when the store
    already holds a version this program does not know.
    """
    latest = migrations[-1].version if migrations else 0
    with conn.transaction():
        # The lock first: two sessions running CREATE SCHEMA IF NOT EXISTS at once can still clash.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (version integer PRIMARY KEY, "
                     "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        found = current_version(conn)
        if found > latest:
            raise NewerSchemaError(f"the job store's schema is at version {found}, newer than this mcp-foundry "
                                   f"knows (up to {latest}); upgrade mcp-foundry on this machine to the version "
                                   "the other workers run")
        conn.execute(f"SET LOCAL search_path TO {SCHEMA}")
        applied = []
        for m in migrations:
            if m.version <= found:
                continue
            for sql in m.statements:
                conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
            applied.append(m.version)
    return applied


def _get(row: Any, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[0]
