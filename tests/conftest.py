"""Fixtures shared by every test folder: a throwaway PostgreSQL for the shared job store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.pg import Cluster, find_bin


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL server for the whole session (initdb + pg_ctl on a free port), removed at the end."""
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed here (no initdb): `bash scripts/setup.sh --test` installs it")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: `bash scripts/setup.sh --test` installs the test extra")
    root = Path(tempfile.mkdtemp(prefix=f"mcpf-pg-{os.getpid()}-"))
    cluster = Cluster(bin_dir, root).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL of a fresh, empty database in the session's cluster."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request, tmp_path):
    """A function that opens one job store of this test (a new connection each call), for each backend.

    The stores opened are closed after the test; `open_store.backend` names the backend.
    """
    from builder.jobs import SqliteJobStore

    if request.param == "postgres":
        from builder.jobs.postgres import PostgresJobStore

        url = request.getfixturevalue("pg_url")

        def make():
            return PostgresJobStore(url)
    else:

        def make():
            return SqliteJobStore(tmp_path / "jobs.sqlite3")

    opened = []

    def open_one():
        opened.append(make())
        return opened[-1]

    open_one.backend = request.param
    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store):
    """One job store of each backend (SQLite in tmp_path, PostgreSQL in a fresh database)."""
    return open_store()
