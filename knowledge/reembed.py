"""Changing the embedding model: re-embed every stored case into a new cases table, then switch to it.

Vectors of two models never share a table: the new table is filled completely (in batches,
with progress), indexed for full-text search, and only then named in the meta table as the
`cases_table` in force, together with the new model and dimension; the old table is dropped
last. A run cut short leaves the old table and meta untouched, so the next open starts over.
The caller holds the repository's write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from knowledge import schema as sc
from knowledge.embed import Embedder
from knowledge.rows import case_to_row, embedding_text, row_to_case

Progress = Callable[[int, int, str], None]
"""progress(done, total, message), called after each batch."""

BATCH = 64


def cases_table_name(embedder: Embedder) -> str:
    """The cases table for a model: 'cases_' + a short hash of its name and dimension."""
    digest = hashlib.sha256(f"{embedder.name}|{embedder.dim}".encode()).hexdigest()[:12]
    return f"cases_{digest}"


def reembed_cases(db: Any, old_name: str, embedder: Embedder, *, stored_model: str,
                  progress: Progress | None = None) -> str:
    """Copy every case of `old_name` into a new table embedded with `embedder`; returns the new table's name.

    Meta is not written here: the caller names the new table in meta once this returns, then
    drops the old one.
    """
    from lancedb.index import FTS

    new_name = cases_table_name(embedder)
    if new_name == old_name:  # the same model under another spelling: nothing to redo
        return old_name
    if new_name in set(db.list_tables().tables):
        db.drop_table(new_name)  # the leftover of a migration cut short
    old = db.open_table(old_name)
    total = old.count_rows()
    schema = sc.cases_schema(embedder.dim)
    new = db.create_table(new_name, schema=schema)
    note = f"re-embedding {total} stored case(s): {stored_model} -> {embedder.name}"
    if progress:
        progress(0, total, note)
    done = 0
    for batch in old.to_arrow().to_batches(max_chunksize=BATCH):
        cases = [row_to_case(r) for r in batch.to_pylist()]
        vectors = embedder.embed([embedding_text(c) for c in cases])
        rows = [case_to_row(c, v) for c, v in zip(cases, vectors, strict=True)]
        new.add(pa.Table.from_pylist(rows, schema=schema))
        done += len(rows)
        if progress:
            progress(done, total, note)
    new.create_index("search_text", config=FTS(stem=True, remove_stop_words=True))
    return new_name
