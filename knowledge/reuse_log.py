"""How the repository is used: one event per finished build, reports of false reuse, and the statistics of both.

A false reuse is a build that was served from a stored case that does not do what was asked.
Anyone who sees one reports it by the build's id (the `report_false_reuse` tool or
`mcp-foundry library flag`); the report is counted in the statistics, and the same request is
never served from that case again (builder.reuse consults `flagged_pairs`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from knowledge import schema as sc
from knowledge.errors import QueryError
from knowledge.search import sql_str
from knowledge.text import requirement_hash

T = TypeVar("T")

Outcome = Literal["reused", "built", "failed"]


class ReuseEvent(BaseModel):
    """How one finished build was served."""

    build_id: str = Field(min_length=1)
    """The build's id (a job id)."""
    request_text: str
    """The request as the build saw it."""
    outcome: Outcome
    """reused: served from a stored case; built: new code; failed: neither."""
    case_id: str = ""
    """The case reused, if any."""
    server_name: str = ""
    """The reused case's server name, if any."""
    how: str = ""
    """How the case was chosen (exact, model, meaning, tools), if reused."""
    score: float = 0.0
    """The match score behind the choice (1.0 for an exact repeat), if reused."""


class FalseReuseReport(BaseModel):
    """A report that a build was served from a case that does not cover its request."""

    build_id: str
    case_id: str
    server_name: str
    reason: str
    created_at: datetime


class CaseHits(BaseModel):
    """How often one case served a build, and how often that was reported wrong."""

    case_id: str
    server_name: str
    hits: int
    false_reports: int


class ReuseStats(BaseModel):
    """Reuse, counted: builds by outcome, the reuse rate, hits by case and false-reuse reports."""

    builds: int
    """Finished builds recorded."""
    reused: int
    built: int
    failed: int
    reuse_rate: float
    """reused / builds (0 when there are none)."""
    by_how: dict[str, int]
    """Reuses by how the case was chosen."""
    hits_by_case: list[CaseHits]
    """Most reused first."""
    false_reuse_reports: int
    false_reuse_rate: float
    """Reports / reuses (0 when there are none)."""
    reports: list[FalseReuseReport]
    """The most recent reports, newest first (at most 20)."""


class ReuseLog:
    """Mixin over the reuse tables; the store supplies table access and retried writes."""

    def _learning_table(self, name: str) -> Any:
        raise NotImplementedError("ReuseLog is a mixin; KnowledgeStore provides _learning_table")

    def _write(self, fn: Callable[[], T], what: str) -> T:
        raise NotImplementedError("ReuseLog is a mixin; KnowledgeStore provides _write")

    def _reuse_rows(self, name: str, where: str | None = None) -> list[dict[str, Any]]:
        query = self._learning_table(name).search()
        return (query.where(where) if where else query).limit(None).to_list()

    def record_build(self, event: ReuseEvent) -> None:
        """Record how a finished build was served."""
        row = {**event.model_dump(), "request_hash": requirement_hash(event.request_text),
               "request_text": event.request_text[:2000], "created_at": datetime.now(UTC)}
        table = self._learning_table(sc.REUSE_EVENTS)
        self._write(lambda: table.add([row]), "record build")

    def report_false_reuse(self, build_id: str, reason: str) -> FalseReuseReport:
        """Report that build `build_id` was served from a case that does not cover its request.

        QueryError when the build was not served by reuse, or the reason is empty.
        """
        if not reason or not reason.strip():
            raise QueryError("reason is empty: say what the reused server does not do that the request asked for")
        rows = [r for r in self._reuse_rows(sc.REUSE_EVENTS, f"build_id = {sql_str(build_id)}")
                if r["outcome"] == "reused"]
        if not rows:
            raise QueryError(f"build {build_id!r} was not served from the repository (no reuse recorded for it); "
                             "only a reused build can be reported as a false reuse. list_builds shows build ids")
        ev = rows[-1]
        report = FalseReuseReport(build_id=build_id, case_id=ev["case_id"], server_name=ev["server_name"],
                                  reason=reason.strip()[:2000], created_at=datetime.now(UTC))
        row = {**report.model_dump(), "request_hash": ev["request_hash"]}
        table = self._learning_table(sc.REUSE_REPORTS)
        self._write(lambda: table.add([row]), "report false reuse")
        return report

    def flagged_pairs(self) -> set[tuple[str, str]]:
        """(request_hash, case_id) pairs reported as false reuses: that request is not served from that case."""
        return {(r["request_hash"], r["case_id"]) for r in self._reuse_rows(sc.REUSE_REPORTS)}

    def reuse_stats(self) -> ReuseStats:
        """Reuse rate, hits by case and false-reuse reports, aggregated from the logged rows."""
        events = self._reuse_rows(sc.REUSE_EVENTS)
        reports = sorted(self._reuse_rows(sc.REUSE_REPORTS), key=lambda r: r["created_at"], reverse=True)
        outcomes = Counter(e["outcome"] for e in events)
        reused = [e for e in events if e["outcome"] == "reused"]
        hits = Counter(e["case_id"] for e in reused)
        names = {e["case_id"]: e["server_name"] for e in reused}
        flagged = Counter(r["case_id"] for r in reports)
        names.update({r["case_id"]: r["server_name"] for r in reports if r["case_id"] not in names})
        cases = [CaseHits(case_id=c, server_name=names.get(c, ""), hits=hits.get(c, 0), false_reports=flagged.get(c, 0))
                 for c in set(hits) | set(flagged)]
        cases.sort(key=lambda h: (-h.hits, -h.false_reports, h.server_name, h.case_id))
        n = len(events)
        return ReuseStats(
            builds=n, reused=outcomes["reused"], built=outcomes["built"], failed=outcomes["failed"],
            reuse_rate=round(outcomes["reused"] / n, 4) if n else 0.0,
            by_how=dict(Counter(e["how"] for e in reused)), hits_by_case=cases,
            false_reuse_reports=len(reports),
            false_reuse_rate=round(len(reports) / len(reused), 4) if reused else 0.0,
            reports=[FalseReuseReport.model_validate(r) for r in reports[:20]],
        )
