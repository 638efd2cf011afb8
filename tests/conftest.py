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
