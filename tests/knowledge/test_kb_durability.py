"""Durability: concurrent writer processes, a writer killed with SIGKILL, and repositories of other schema versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from knowledge import schema as sc
from knowledge.embed import HashingEmbedder
from knowledge.errors import SchemaVersionError
from knowledge.models import SuccessCase
from knowledge.store import KnowledgeStore

WRITER = [sys.executable, str(Path(__file__).with_name("kb_writer.py"))]
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    uri = str(tmp_path / "kb")
    KnowledgeStore.open(uri, embedder=HashingEmbedder())  # create tables before the race
    n = 25
    procs = [
        subprocess.Popen([*WRITER, uri, tag, str(n)], env=ENV, stdout=subprocess.PIPE, text=True)
        for tag in "ab"
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    names = {c.server_name for c in store.list_cases()}
    assert names == {f"{t}-{i}" for t in "ab" for i in range(n)}
    assert store.case_count() == 2 * n
    assert all(len(o.split()) == n for o in outs)


def test_two_processes_storing_the_same_cases_at_once_keep_one_row_each(tmp_path):
    uri = str(tmp_path / "kb")
    KnowledgeStore.open(uri, embedder=HashingEmbedder())
    n = 15
    procs = [
        subprocess.Popen([*WRITER, uri, "same", str(n), "ids"], env=ENV, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 3
    for p in procs:  # release them together so that their writes of each case collide
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=180)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    assert store.case_count() == n  # one row per (server name, request), however the writes interleave
    stored = {c.id for c in store.list_cases()}
    assert all(len(o) == n for o in outs)
    assert set().union(*outs) <= stored  # every id add_case returned names the stored row


def test_writer_killed_mid_writes_leaves_repository_readable(tmp_path):
    uri = str(tmp_path / "kb")
    proc = subprocess.Popen([*WRITER, uri, "k", "10000"], env=ENV, stdout=subprocess.PIPE, text=True)
    landed = []
    while len(landed) < 15:
        line = proc.stdout.readline()
        assert line, "writer exited early"
        landed.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    names = {c.server_name for c in store.list_cases()}
    assert set(landed) <= names  # every acknowledged write survived
    assert store.case_count() == len(names)
    assert store.find_similar("k request number 3 about widgets", limit=1)[0].case.server_name == "k-3"
    store.add_case(SuccessCase(request_text="after the crash", server_name="after"))
    store.optimize()
    assert store.get_case(store.find_exact("after the crash").id).server_name == "after"


def _write_v0_repository(uri: str) -> None:
    """The pre-release layout: a cases table without times_reused, source and category, and no meta table."""
    import lancedb

    emb = HashingEmbedder()
    full = sc.cases_schema(emb.dim)
    old = pa.schema([f for f in full if f.name not in ("times_reused", "source", "category")])
    case = SuccessCase(request_text="old case from version zero", server_name="old-one")
    from knowledge.rows import case_to_row

    row = {k: v for k, v in case_to_row(case, emb.embed([case.request_text])[0]).items() if k in old.names}
    lancedb.connect(uri).create_table(sc.CASES, data=pa.Table.from_pylist([row], schema=old))


def test_version_0_repository_is_migrated_on_open(tmp_path):
    uri = str(tmp_path / "kb")
    _write_v0_repository(uri)
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    assert store.meta()["schema_version"] == str(sc.SCHEMA_VERSION)
    (old,) = store.list_cases()
    assert (old.server_name, old.times_reused, old.source) == ("old-one", 0, "build")
    assert store.mark_reused(old.id) == 1
    assert store.find_similar("old case version zero", limit=1)[0].case.id == old.id


def test_meta_row_with_version_0_is_migrated(tmp_path):
    uri = str(tmp_path / "kb")
    _write_v0_repository(uri)
    import lancedb

    lancedb.connect(uri).create_table(
        sc.META, data=[{"key": "schema_version", "value": "0"}], schema=sc.META_SCHEMA
    )
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    assert store.meta()["schema_version"] == str(sc.SCHEMA_VERSION)
    assert store.list_cases()[0].source == "build"


def test_newer_schema_version_raises_with_instructions(tmp_path):
    uri = str(tmp_path / "kb")
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    store._set_meta({"schema_version": "7"})
    with pytest.raises(SchemaVersionError, match="schema version 7.*Upgrade mcp-foundry"):
        KnowledgeStore.open(uri, embedder=HashingEmbedder())


def test_version_without_migration_path_says_what_to_do(tmp_path):
    uri = str(tmp_path / "kb")
    store = KnowledgeStore.open(uri, embedder=HashingEmbedder())
    store._set_meta({"schema_version": "-1"})
    with pytest.raises(SchemaVersionError, match="no migration from version -1.*library seed"):
        KnowledgeStore.open(uri, embedder=HashingEmbedder())
    time.sleep(0)  # keep the repository untouched: reopening must fail the same way
    with pytest.raises(SchemaVersionError):
        KnowledgeStore.open(uri, embedder=HashingEmbedder())
