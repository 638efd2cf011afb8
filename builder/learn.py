"""Learn: what a build leaves in the knowledge repository, for successes and failures alike.

A success stores the case (embedded for search), a template from its files, the
package <-> feature edges, a benchmark row and the outcome of every healing attempt.
A failure stores the edges (as failures), the healing attempts, and one row for the
failure that ended the build, so the healer's strategy ranking learns from both.
"""

from __future__ import annotations

import statistics
from typing import Any

from builder.draft import ServerDraft
from builder.loop import HealAttempt
from builder.requirement import Requirement
from knowledge.models import BenchmarkRow, FailureRecord, SuccessCase, Template, ToolInfo, ValidationSummary
from knowledge.text import normalize_package


def success_case(request: str, req: Requirement, draft: ServerDraft, report: Any, *, deployed_dir: str,
                 build_seconds: float, iterations: int, tokens: int) -> SuccessCase:
    """The SuccessCase of a validated build (tools as the validator listed them)."""
    cases = report.cases
    return SuccessCase(
        request_text=request, server_name=req.server_name, summary=req.summary, category=req.category,
        tags=sorted({req.category, *req.tool_names()}),
        tools=[ToolInfo(name=t.name, description=t.description or "", input_schema=t.input_schema,
                        output_schema=t.output_schema, annotations=t.annotations) for t in report.tools],
        dependencies=draft.requirements(), files=draft.files, deployed_dir=deployed_dir,
        validation_summary=ValidationSummary(passed=sum(c.passed for c in cases), total=len(cases),
                                             detail=f"{len(report.checks)} checks passed in {report.duration:.2f} s"),
        verdict="passed", build_seconds=round(build_seconds, 3), iterations=iterations, tokens=tokens,
    )


def features(req: Requirement) -> list[str]:
    """Functionality labels for dependency edges: the category and each tool's name."""
    return [req.category, *req.tool_names()]


def third_party(requirements: list[str]) -> list[str]:
    """Requirement names other than mcp itself (every server needs mcp; it says nothing about a feature)."""
    return [r for r in requirements if normalize_package(r) not in ("mcp", "")]


def median_latency_ms(report: Any) -> float:
    """Median tool-call latency seen by the validator."""
    lat = [c.latency_ms for c in getattr(report, "cases", [])]
    return float(statistics.median(lat)) if lat else 0.0


def learn_success(store: Any, case: SuccessCase, req: Requirement, report: Any,
                  attempts: list[HealAttempt]) -> str:
    """Store everything a successful build taught; returns the case id."""
    case_id = store.add_case(case)
    store.add_template(Template(name=f"{req.category}-{req.server_name}", description=req.summary,
                                category=req.category, files={k: v for k, v in case.files.items()
                                                              if k in ("server.py", "requirements.txt")},
                                dependencies=case.dependencies, source_case_ids=[case_id]))
    deps = third_party(case.dependencies)
    if deps:
        store.add_dependency_edges(deps, features(req), "success")
    store.add_benchmark(BenchmarkRow(category=req.category, server_name=req.server_name,
                                     build_seconds=case.build_seconds, iterations=case.iterations,
                                     tokens=case.tokens, tool_latency_ms=median_latency_ms(report)))
    record_attempts(store, attempts, req.server_name)
    return case_id


def record_attempts(store: Any, attempts: list[HealAttempt], server_name: str) -> int:
    """One failure-analysis row per settled healing attempt; returns rows written."""
    n = 0
    for a in attempts:
        if a.outcome == "pending":
            continue
        store.record_failure(FailureRecord(error_class=a.error_class, message=a.message, strategy=a.strategy,
                                           outcome=a.outcome, server_name=server_name))
        n += 1
    return n


def learn_failure(store: Any, *, error_class: str | None, message: str, strategy: str, server_name: str = "",
                  req: Requirement | None = None, draft: ServerDraft | None = None,
                  attempts: list[HealAttempt] | None = None) -> None:
    """Store what a failed build taught: its healing attempts, the final failure and failed dependency edges.

    `error_class` None: the final failure is already the last healing attempt, so no extra row.
    """
    record_attempts(store, attempts or [], server_name)
    if error_class is not None:
        store.record_failure(FailureRecord(error_class=error_class, message=message[:2000], strategy=strategy,
                                           outcome="not_fixed", server_name=server_name))
    if req is not None and draft is not None:
        deps = third_party(draft.requirements())
        if deps:
            store.add_dependency_edges(deps, features(req), "failure")
