"""The side tables a build learns into: templates, dependency edges, benchmarks and failure analyses.

Counts (edge counts, strategy success rates) are aggregated on read from one row per
observation, so concurrent writers append and never lose an increment.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from knowledge import schema as sc
from knowledge.models import BenchmarkRow, DependencyEdge, FailureRecord, StrategyStat, Template
from knowledge.search import sql_str
from knowledge.text import normalize_package

T = TypeVar("T")


class LearningTables:
    """Mixin over the side tables; the store supplies table access and retried writes."""

    def _learning_table(self, name: str) -> Any:
        raise NotImplementedError("LearningTables is a mixin; KnowledgeStore provides _learning_table")

    def _write(self, fn: Callable[[], T], what: str) -> T:
        raise NotImplementedError("LearningTables is a mixin; KnowledgeStore provides _write")

    def _all(self, name: str, where: str | None = None) -> list[dict[str, Any]]:
        query = self._learning_table(name).search()
        return (query.where(where) if where else query).limit(None).to_list()

    # ---- templates ---------------------------------------------------------------------------

    def add_template(self, template: Template) -> str:
        """Store (or replace, by id) a reusable skeleton; returns its id."""
        row = {
            "id": template.id,
            "name": template.name,
            "description": template.description,
            "category": template.category,
            "files_json": json.dumps(template.files),
            "dependencies": list(template.dependencies),
            "source_case_ids": list(template.source_case_ids),
            "created_at": template.created_at,
        }
        table = self._learning_table(sc.TEMPLATES)
        self._write(
            lambda: (
                table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute([row])
            ),
            "add template",
        )
        return template.id

    def list_templates(self, category: str | None = None) -> list[Template]:
        """Stored templates, optionally of one category, oldest first."""
        rows = self._all(sc.TEMPLATES, f"category = {sql_str(category)}" if category else None)
        out = [
            Template(
                id=r["id"],
                name=r["name"],
                description=r["description"] or "",
                category=r["category"] or "",
                files=json.loads(r["files_json"] or "{}"),
                dependencies=r["dependencies"] or [],
                source_case_ids=r["source_case_ids"] or [],
                created_at=r["created_at"],
            )
            for r in rows
        ]
        return sorted(out, key=lambda t: (t.created_at, t.id))

    # ---- dependency graph --------------------------------------------------------------------

    def add_dependency_edges(
        self, packages: Iterable[str], features: Iterable[str], outcome: Literal["success", "failure"]
    ) -> int:
        """Record that these packages were used for these features with this outcome; returns edges written."""
        if outcome not in ("success", "failure"):
            raise ValueError(f"outcome must be 'success' or 'failure', got {outcome!r}")
        names = sorted({normalize_package(p) for p in packages} - {""})
        feats = sorted({f.strip().lower() for f in features if f.strip()})
        if not names or not feats:
            raise ValueError(
                f"add_dependency_edges needs at least one package and one feature; got packages={names}, features={feats}"
            )
        now = datetime.now(UTC)
        rows = [
            {"package": p, "feature": f, "outcome": outcome, "created_at": now} for p in names for f in feats
        ]
        table = self._learning_table(sc.EDGES)
        self._write(lambda: table.add(rows), "add dependency edges")
        return len(rows)

    def dependency_edges(
        self, package: str | None = None, feature: str | None = None
    ) -> list[DependencyEdge]:
        """Aggregated edges, most used first; optionally only one package's or one feature's."""
        conds = []
        if package:
            conds.append(f"package = {sql_str(normalize_package(package))}")
        if feature:
            conds.append(f"feature = {sql_str(feature.strip().lower())}")
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in self._all(sc.EDGES, " AND ".join(conds) or None):
            counts[(r["package"], r["feature"])][0 if r["outcome"] == "success" else 1] += 1
        edges = [
            DependencyEdge(package=p, feature=f, count=s + x, successes=s, failures=x)
            for (p, f), (s, x) in counts.items()
        ]
        return sorted(edges, key=lambda e: (-e.count, e.package, e.feature))

    # ---- benchmarks --------------------------------------------------------------------------

    def add_benchmark(self, row: BenchmarkRow) -> None:
        """Record one build's performance figures."""
        table = self._learning_table(sc.BENCHMARKS)
        self._write(lambda: table.add([row.model_dump()]), "add benchmark")

    def benchmarks(self, category: str | None = None) -> list[BenchmarkRow]:
        """Recorded benchmark rows, optionally of one category, oldest first."""
        rows = self._all(sc.BENCHMARKS, f"category = {sql_str(category)}" if category else None)
        return sorted((BenchmarkRow.model_validate(r) for r in rows), key=lambda b: b.created_at)

    # ---- failure analysis --------------------------------------------------------------------

    def record_failure(self, record: FailureRecord) -> None:
        """Record a failure, its normalized signature, the strategy applied and whether it worked."""
        row = record.model_dump()
        row["message"] = row["message"][:2000]
        table = self._learning_table(sc.FAILURES)
        self._write(lambda: table.add([row]), "record failure")

    def failures(self, error_class: str | None = None, signature: str | None = None) -> list[FailureRecord]:
        """Recorded failures, optionally of one class and/or signature, oldest first."""
        conds = []
        if error_class:
            conds.append(f"error_class = {sql_str(error_class)}")
        if signature:
            conds.append(f"signature = {sql_str(signature)}")
        rows = self._all(sc.FAILURES, " AND ".join(conds) or None)
        return sorted((FailureRecord.model_validate(r) for r in rows), key=lambda f: f.created_at)

    def strategy_stats(self, error_class: str) -> list[StrategyStat]:
        """How each healing strategy fared against this error class: best success rate first."""
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in self._all(sc.FAILURES, f"error_class = {sql_str(error_class)}"):
            tally[r["strategy"]][0] += 1
            tally[r["strategy"]][1] += r["outcome"] == "fixed"
        stats = [StrategyStat(strategy=s, attempts=a, successes=k, rate=k / a) for s, (a, k) in tally.items()]
        return sorted(stats, key=lambda s: (-s.rate, -s.attempts, s.strategy))
