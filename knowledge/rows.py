"""Conversion between the pydantic models and the flat rows stored in LanceDB tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from knowledge.models import SuccessCase, ToolInfo, ValidationSummary
from knowledge.text import cjk_terms


def embedding_text(case: SuccessCase) -> str:
    """What gets embedded for a case: the request, the summary and the tools' names and descriptions."""
    tools = "; ".join(f"{t.name.replace('_', ' ')}: {t.description}" for t in case.tools)
    return " ".join(p for p in (case.request_text, case.summary, tools) if p)[:2000]


def search_text(case: SuccessCase) -> str:
    """What full-text search indexes: request, summary, tags, tool names (split) and descriptions, parameters.

    CJK text is followed by its character bigrams (knowledge.text.cjk_terms), so that a Chinese
    query finds a Chinese request by its words.
    """
    parts = [case.request_text, case.summary, " ".join(case.tags), case.category]
    for tool in case.tools:
        parts += [tool.name, tool.name.replace("_", " "), tool.description, " ".join(tool.param_names())]
    text = "\n".join(p for p in parts if p)
    bigrams = cjk_terms(text)
    return f"{text}\n{bigrams}" if bigrams else text


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def case_to_row(case: SuccessCase, vector: list[float]) -> dict[str, Any]:
    """A success case as a cases-table row."""
    return {
        "id": case.id,
        "request_text": case.request_text,
        "requirement_hash": case.requirement_hash,
        "server_name": case.server_name,
        "summary": case.summary,
        "category": case.category,
        "tags": list(case.tags),
        "tools_json": json.dumps([t.model_dump() for t in case.tools]),
        "tool_names": [t.name for t in case.tools],
        "dependencies": list(case.dependencies),
        "dependency_names": case.dependency_names(),
        "files_json": json.dumps(case.files),
        "deployed_dir": case.deployed_dir,
        "validation_json": case.validation_summary.model_dump_json(),
        "validation_pass_rate": case.validation_summary.pass_rate,
        "verdict": case.verdict,
        "build_seconds": case.build_seconds,
        "iterations": case.iterations,
        "tokens": case.tokens,
        "created_at": _utc(case.created_at),
        "updated_at": _utc(case.updated_at),
        "times_reused": case.times_reused,
        "source": case.source,
        "search_text": search_text(case),
        "vector": vector,
    }


def row_to_case(row: dict[str, Any]) -> SuccessCase:
    """A cases-table row back as a SuccessCase (tolerates columns a migration filled with nulls)."""
    return SuccessCase(
        id=row["id"],
        request_text=row["request_text"],
        requirement_hash=row["requirement_hash"],
        server_name=row["server_name"],
        summary=row.get("summary") or "",
        category=row.get("category") or "",
        tags=row.get("tags") or [],
        tools=[ToolInfo.model_validate(t) for t in json.loads(row.get("tools_json") or "[]")],
        dependencies=row.get("dependencies") or [],
        files=json.loads(row.get("files_json") or "{}"),
        deployed_dir=row.get("deployed_dir"),
        validation_summary=ValidationSummary.model_validate_json(row.get("validation_json") or "{}"),
        verdict=row.get("verdict") or "passed",
        build_seconds=row.get("build_seconds") or 0.0,
        iterations=row.get("iterations") or 0,
        tokens=row.get("tokens") or 0,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        times_reused=row.get("times_reused") or 0,
        source=row.get("source") or "build",
    )
