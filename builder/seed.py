"""Seeding: validate each starter server in the sandbox and store those that pass in the knowledge repository.

Idempotent: a starter already stored with identical files and request is skipped without
running anything. A starter that fails validation is reported with its reason and not stored.
Job params (all optional): "directory", a folder of starters in the same layout as
knowledge/starters (default: the shipped library); "only", a list of starter names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, Field

from builder.draft import ServerDraft
from builder.errors import InputError
from builder.jobs import JobContext
from builder.loop import ValidationDigest
from knowledge.models import SearchFilters, SuccessCase, ToolInfo, ValidationSummary

if TYPE_CHECKING:
    from builder.service import Foundry
    from knowledge.starters import Starter


class SeedItem(BaseModel):
    """What happened to one starter."""

    name: str
    status: Literal["stored", "skipped", "failed"]
    reason: str = ""
    case_id: str | None = None
    validation: ValidationDigest | None = None
    seconds: float = 0.0


class SeedReport(BaseModel):
    """The outcome of seeding: one item per starter and the totals."""

    ok: bool
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None
    starters: list[SeedItem] = Field(default_factory=list)


def starters_from(params: dict[str, Any]) -> list[Starter]:
    """The starters a seed job covers; InputError for an unknown directory or name."""
    from knowledge.starters import list_starters, load_starter

    if params.get("directory"):
        root = Path(params["directory"]).expanduser()
        if not root.is_dir():
            raise InputError("directory", f"{root} is not a directory", "a folder of starter folders")
        found = [load_starter(d) for d in sorted(root.iterdir()) if (d / "server.py").is_file()]
    else:
        found = list_starters()
    only = params.get("only")
    if only:
        unknown = sorted(set(only) - {s.name for s in found})
        if unknown:
            raise InputError("only", f"unknown starter(s) {unknown}", ", ".join(s.name for s in found))
        found = [s for s in found if s.name in only]
    return found


def starter_files(starter: Starter) -> dict[str, str]:
    """The files stored with a starter's case (meta.json is metadata, not part of the server)."""
    files = ServerDraft.read_from(starter.directory).files
    files.pop("meta.json", None)
    return files


async def run_seed(ctx: JobContext, foundry: Foundry) -> SeedReport:
    """The "seed" job: validate and store each starter, skipping unchanged ones."""
    starters = starters_from(ctx.params)
    store = await anyio.to_thread.run_sync(lambda: foundry.knowledge)
    report = SeedReport(ok=True)
    for i, starter in enumerate(starters):
        ctx.progress(i / max(1, len(starters)), "seed", f"{starter.name} ({i + 1}/{len(starters)})")
        item = await _seed_one(ctx, foundry, store, starter)
        report.starters.append(item)
        setattr(report, item.status, getattr(report, item.status) + 1)
        ctx.log(f"{starter.name}: {item.status}" + (f" ({item.reason})" if item.reason else ""))
    if report.failed:
        report.ok = False
        report.error = "starters that failed validation (not stored): " + "; ".join(
            f"{s.name}: {s.reason}" for s in report.starters if s.status == "failed")
    return report


async def _seed_one(ctx: JobContext, foundry: Foundry, store: Any, starter: Starter) -> SeedItem:
    from builder.validation import prepare_and_validate

    t = time.monotonic()
    files = starter_files(starter)
    stored = await anyio.to_thread.run_sync(lambda: store.list_cases(
        SearchFilters(server_name=starter.server_name, source="starter")))
    same = [c for c in stored if c.files == files and c.request_text == starter.description]
    if same:
        return SeedItem(name=starter.name, status="skipped", reason="already stored and unchanged",
                        case_id=same[0].id, seconds=time.monotonic() - t)
    report = await prepare_and_validate(foundry, directory=starter.directory, log=ctx.log)
    digest = ValidationDigest.of(report)
    if report.verdict != "pass":
        return SeedItem(name=starter.name, status="failed", validation=digest, seconds=time.monotonic() - t,
                        reason="; ".join(digest.failed[:3]) or "validation failed")
    import ast

    # The module docstring says what the server does in its own words: one more view of it for reuse by meaning.
    doc = ast.get_docstring(ast.parse(files.get("server.py", ""))) or starter.description
    case = SuccessCase(
        request_text=starter.description, server_name=starter.server_name, summary=doc.splitlines()[0],
        category=starter.category, tags=list(starter.tags),
        tools=[ToolInfo(name=x.name, description=x.description or "", input_schema=x.input_schema,
                        output_schema=x.output_schema, annotations=x.annotations) for x in report.tools],
        dependencies=list(starter.requirements), files=files,
        validation_summary=ValidationSummary(passed=sum(c.passed for c in report.cases), total=len(report.cases),
                                             detail=f"{len(report.checks)} checks passed"),
        verdict="passed", source="starter")
    case_id = await anyio.to_thread.run_sync(lambda: store.add_case(case))
    for old in stored:  # an earlier version of this starter (other files or request): the new one replaces it
        if old.id != case_id:
            await anyio.to_thread.run_sync(lambda o=old: store.delete_case(o.id))
    return SeedItem(name=starter.name, status="stored", case_id=case_id, validation=digest,
                    seconds=time.monotonic() - t)
