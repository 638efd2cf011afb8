"""What only the PostgreSQL job store has: its schema made and upgraded by the program, the database's clock,
and clear errors for a bad or unreachable MCP_FOUNDRY_DB_URL."""

from __future__ import annotations

import threading

import psycopg
import pytest

from builder.config import load_settings
from builder.errors import InputError
from builder.jobs import JobState
from builder.jobs import pg_schema as ps
from builder.jobs.postgres import PostgresJobStore, mask_url
from builder.service import describe_job_store


def test_a_new_database_gets_the_schema_and_several_stores_opening_at_once_migrate_it_once(pg_url):
    errors: list[BaseException] = []
    stores: list[PostgresJobStore] = []

    def open_one() -> None:
        try:
            stores.append(PostgresJobStore(pg_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(stores) == 4
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT version, name FROM {ps.SCHEMA}.schema_migrations ORDER BY version").fetchall()
    assert [v for v, _ in rows] == [m.version for m in ps.MIGRATIONS]  # each applied once
    assert stores[0].schema_version() == ps.MIGRATIONS[-1].version
    assert f"schema {ps.MIGRATIONS[-1].version}; shared by every worker" in describe_job_store(stores[0])
    for s in stores:
        s.close()


def test_a_store_of_an_older_schema_is_upgraded_in_place_and_keeps_its_jobs(pg_url):
    store = PostgresJobStore(pg_url)
    job = store.create("k", {"n": 1}, timeout_s=60)
    store.append_log(job.id, "before the upgrade")
    store.close()
    later = ps.Migration(ps.MIGRATIONS[-1].version + 1, "a column for tests",
                         ["ALTER TABLE jobs ADD COLUMN note text NOT NULL DEFAULT 'upgraded'"])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert ps.migrate(conn, [*ps.MIGRATIONS, later]) == [later.version]
        assert ps.migrate(conn, [*ps.MIGRATIONS, later]) == []  # nothing left to do
        note = conn.execute(f"SELECT note FROM {ps.SCHEMA}.jobs WHERE id = %s", (job.id,)).fetchone()[0]
    assert note == "upgraded"
    # The program of the earlier version refuses the newer store rather than guessing at it.
    with pytest.raises(ps.NewerSchemaError, match=rf"version {later.version}, newer than this mcp-foundry knows"):
        PostgresJobStore(pg_url)


def test_times_are_the_database_clock_and_a_lease_runs_out_by_it(pg_url):
    store = PostgresJobStore(pg_url)
    with psycopg.connect(pg_url) as conn:
        db_now = conn.execute("SELECT EXTRACT(EPOCH FROM now())::float8").fetchone()[0]
    job = store.create("k", {}, timeout_s=60)
    assert abs(job.created_at - db_now) < 5
    worker = store.register_worker(max_jobs=1, lease_s=3)
    store.claim_next(worker.id, ["k"])
    # A worker elsewhere whose clock is an hour fast still writes database times, so its lease is judged fairly.
    store._write("UPDATE workers SET host = 'elsewhere' WHERE id = %s", (worker.id,))
    assert store.heartbeat(worker.id) and store.get(job.id).state == "running"
    store._write("UPDATE workers SET heartbeat_at = heartbeat_at - 4 WHERE id = %s", (worker.id,))
    assert store.get(job.id).state == "interrupted"  # read: found dead by its lease
    assert store.reap() == [] and store.workers() == []
    assert not store.finish(job.id, JobState.succeeded, result={}, worker_id=worker.id)
    store.close()


@pytest.mark.parametrize("url, problem", [
    ("mysql://u@h/db", "scheme 'mysql' is not a job store"),
    ("postgresql://u@h:notaport/db", "not a URL"),
    ("postgresql://u@h:5432", "names no database"),
])
def test_a_bad_db_url_is_refused_naming_the_variable(url, problem):
    with pytest.raises(InputError) as e:
        load_settings(environ={"MCP_FOUNDRY_DB_URL": url})
    assert "MCP_FOUNDRY_DB_URL" in e.value.field and problem in e.value.problem
    assert "postgresql://USER:PASSWORD@HOST:PORT/DB" in e.value.accepted


def test_an_unreachable_database_is_a_clear_error_with_the_password_masked(pg_cluster):
    url = f"postgresql://someone:s3cret@127.0.0.1:{pg_cluster.port}/no_such_db"
    with pytest.raises(InputError) as e:
        PostgresJobStore(url, connect_timeout_s=2)
    assert e.value.field == "MCP_FOUNDRY_DB_URL" and "s3cret" not in str(e.value)
    assert "someone:***@127.0.0.1" in str(e.value) and "no_such_db" in str(e.value)
    assert mask_url("postgresql://a:b@h/d") == "postgresql://a:***@h/d"
    assert mask_url("postgresql://a@h/d") == "postgresql://a@h/d"
    public = load_settings(environ={"MCP_FOUNDRY_DB_URL": url}).public()
    assert public["db_url"] == f"postgresql://someone:***@127.0.0.1:{pg_cluster.port}/no_such_db"
