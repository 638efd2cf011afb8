"""Table layouts of the repository, the schema version, and migrations from older versions.

Version history:
  0  pre-release layout: `cases` had no `times_reused`, `source` or `category` columns and no
     `meta` table existed (or it held version "0").
  1  five data tables plus `meta` (key/value) holding schema_version, embedding_model
     and embedding_dim.
  2  current: adds `reuse_events` and `reuse_reports` (created empty on open), and meta
     `cases_table`: the name of the cases table in force (the default "cases" until a change of
     embedding model re-embeds the cases into a new table, see knowledge.reembed).
A version with a migration below is upgraded in place on open; any other mismatch raises
SchemaVersionError saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from knowledge.errors import SchemaVersionError

SCHEMA_VERSION = 2
"""The layout this code writes."""

META = "meta"
CASES = "cases"
TEMPLATES = "templates"
EDGES = "dependency_edges"
BENCHMARKS = "benchmarks"
FAILURES = "failures"
REUSE_EVENTS = "reuse_events"
REUSE_REPORTS = "reuse_reports"

_ts = pa.timestamp("us", tz="UTC")


def cases_schema(dim: int) -> pa.Schema:
    """Success cases; nested values (tools, files, validation) are JSON text so the layout stays flat."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("request_text", pa.string()),
            pa.field("requirement_hash", pa.string()),
            pa.field("server_name", pa.string()),
            pa.field("summary", pa.string()),
            pa.field("category", pa.string()),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("tools_json", pa.string()),
            pa.field("tool_names", pa.list_(pa.string())),
            pa.field("dependencies", pa.list_(pa.string())),
            pa.field("dependency_names", pa.list_(pa.string())),
            pa.field("files_json", pa.string()),
            pa.field("deployed_dir", pa.string()),
            pa.field("validation_json", pa.string()),
            pa.field("validation_pass_rate", pa.float64()),
            pa.field("verdict", pa.string()),
            pa.field("build_seconds", pa.float64()),
            pa.field("iterations", pa.int64()),
            pa.field("tokens", pa.int64()),
            pa.field("created_at", _ts),
            pa.field("updated_at", _ts),
            pa.field("times_reused", pa.int64()),
            pa.field("source", pa.string()),
            # What full-text search indexes: request, summary, tool names/descriptions, tags.
            pa.field("search_text", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


TEMPLATES_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("description", pa.string()),
        pa.field("category", pa.string()),
        pa.field("files_json", pa.string()),
        pa.field("dependencies", pa.list_(pa.string())),
        pa.field("source_case_ids", pa.list_(pa.string())),
        pa.field("created_at", _ts),
    ]
)

# One row per observation; counts are aggregated on read so concurrent writers never lose an increment.
EDGES_SCHEMA = pa.schema(
    [
        pa.field("package", pa.string()),
        pa.field("feature", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("created_at", _ts),
    ]
)

BENCHMARKS_SCHEMA = pa.schema(
    [
        pa.field("category", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("build_seconds", pa.float64()),
        pa.field("iterations", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("tool_latency_ms", pa.float64()),
        pa.field("created_at", _ts),
    ]
)

FAILURES_SCHEMA = pa.schema(
    [
        pa.field("error_class", pa.string()),
        pa.field("signature", pa.string()),
        pa.field("message", pa.string()),
        pa.field("strategy", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("created_at", _ts),
    ]
)

# One row per finished build: how it was served (reused, built or failed) and from which case.
REUSE_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("build_id", pa.string()),
        pa.field("request_hash", pa.string()),
        pa.field("request_text", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("case_id", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("how", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("created_at", _ts),
    ]
)

# One row per report that a reuse served a request its case does not cover.
REUSE_REPORTS_SCHEMA = pa.schema(
    [
        pa.field("build_id", pa.string()),
        pa.field("case_id", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("request_hash", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("created_at", _ts),
    ]
)

META_SCHEMA = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string())])


def table_schemas(dim: int) -> dict[str, pa.Schema]:
    """Every data table's schema at SCHEMA_VERSION, by table name."""
    return {
        CASES: cases_schema(dim),
        TEMPLATES: TEMPLATES_SCHEMA,
        EDGES: EDGES_SCHEMA,
        BENCHMARKS: BENCHMARKS_SCHEMA,
        FAILURES: FAILURES_SCHEMA,
        REUSE_EVENTS: REUSE_EVENTS_SCHEMA,
        REUSE_REPORTS: REUSE_REPORTS_SCHEMA,
    }


def _migrate_0_to_1(db: Any) -> None:
    """Add the columns version 0 lacked, with the values a version-0 case implicitly had."""
    if CASES not in set(db.list_tables().tables):
        return
    table = db.open_table(CASES)
    have = set(table.schema.names)
    missing = {
        "times_reused": "CAST(0 AS BIGINT)",
        "source": "CAST('build' AS STRING)",
        "category": "CAST('' AS STRING)",
    }
    todo = {name: expr for name, expr in missing.items() if name not in have}
    if todo:
        table.add_columns(todo)


def _migrate_1_to_2(db: Any) -> None:
    """Nothing to rewrite: the two reuse tables are created empty on open and cases_table defaults to "cases"."""


MIGRATIONS: dict[int, Callable[[Any], None]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}
"""from_version -> function that upgrades a repository from that version to the next."""


def migrate(db: Any, found: int, uri: str) -> int:
    """Upgrade a repository from version `found` to SCHEMA_VERSION, step by step; returns the new version."""
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"knowledge repository at {uri} has schema version {found}, written by a newer mcp-foundry; this one "
            f"reads version {SCHEMA_VERSION}. Upgrade mcp-foundry, or point the knowledge URI at another location."
        )
    version = found
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise SchemaVersionError(
                f"knowledge repository at {uri} has schema version {found} and no migration from version {version} "
                f"exists (supported: {sorted(MIGRATIONS)} -> {SCHEMA_VERSION}). Move the directory aside and "
                "re-seed a new repository with 'mcp-foundry library seed'."
            )
        step(db)
        version += 1
    return version
