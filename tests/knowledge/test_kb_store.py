"""KnowledgeStore behaviour against a real LanceDB repository and the real embedding model."""

from __future__ import annotations

import pytest

from knowledge.errors import CaseNotFoundError, EmbeddingError, RepositoryError
from knowledge.models import (
    BenchmarkRow,
    FailureRecord,
    SearchFilters,
    SearchQuery,
    SuccessCase,
    Template,
    ToolInfo,
    ValidationSummary,
)
from knowledge.store import KnowledgeStore


def _case(name: str, request: str, deps: list[str], passed: int = 3, total: int = 3, **kw) -> SuccessCase:
    return SuccessCase(
        request_text=request,
        server_name=name,
        summary=request,
        tools=[
            ToolInfo(
                name=name.replace("-", "_"), description=request, input_schema={"properties": {"text": {}}}
            )
        ],
        dependencies=deps,
        validation_summary=ValidationSummary(passed=passed, total=total),
        **kw,
    )


def test_round_trip_keeps_every_field(store):
    case = _case("pdf-reader", "Read text from PDF files", ["pypdf==7.1.1"], files={"server.py": "print(1)"})
    case_id = store.add_case(case)
    got = store.get_case(case_id)
    assert got.model_dump(exclude={"updated_at", "created_at"}) == case.model_dump(
        exclude={"updated_at", "created_at"}
    )
    assert store.case_count() == 1 and [c.id for c in store.list_cases()] == [case_id]


def test_filters_restrict_search_results(store):
    store.add_cases(
        [
            _case("pdf-reader", "Read text from PDF files", ["pypdf==7.1.1"]),
            _case("pdf-lite", "Extract PDF text quickly", ["pdfminer-six==1"], passed=1, total=3),
            _case("md-render", "Render markdown to html", ["Markdown==3.11.3"]),
        ]
    )
    names = lambda ms: [m.case.server_name for m in ms]  # noqa: E731
    assert set(names(store.find_similar("pdf text"))[:2]) == {"pdf-reader", "pdf-lite"}
    assert names(store.find_similar("pdf text", filters=SearchFilters(dependency="PyPDF"))) == ["pdf-reader"]
    assert "pdf-lite" not in names(
        store.find_similar("pdf text", filters=SearchFilters(min_validation_pass=0.9))
    )
    only = store.find_similar("pdf text", filters=SearchFilters(server_name="md-render"))
    assert names(only) == ["md-render"]
    assert names(store.find_similar(SearchQuery(dependencies=["markdown"]))) == ["md-render"]
    assert [c.server_name for c in store.list_cases(SearchFilters(dependency="markdown"))] == ["md-render"]


def test_same_server_and_requirement_is_stored_once(store):
    first = store.add_case(_case("pdf-reader", "Read text from PDF files", ["pypdf"]))
    second = store.add_case(_case("pdf-reader", "read text, from PDF files!", ["pypdf", "mcp"]))
    assert first == second
    assert store.case_count() == 1
    assert store.get_case(first).dependencies == ["pypdf", "mcp"]
    store.add_case(_case("other-name", "Read text from PDF files", ["pypdf"]))
    assert store.case_count() == 2


def test_exact_repeat_is_detected_after_normalization(store):
    case_id = store.add_case(_case("pdf-reader", "Read text from PDF files", ["pypdf"]))
    assert store.find_exact("  READ text from PDF files?! ").id == case_id
    assert store.find_exact("Read text from Word files") is None


def test_unknown_case_id_is_named_in_the_error(store):
    with pytest.raises(CaseNotFoundError, match="'no-such-id'"):
        store.get_case("no-such-id")
    with pytest.raises(CaseNotFoundError, match="'missing'"):
        store.mark_reused("missing")


def test_mark_reused_counts_and_survives_update(store):
    case_id = store.add_case(_case("pdf-reader", "Read text from PDF files", ["pypdf"]))
    assert store.mark_reused(case_id) == 1
    assert store.mark_reused(case_id) == 2
    store.add_case(_case("pdf-reader", "Read text from PDF files", ["pypdf"]))
    assert store.get_case(case_id).times_reused == 2


def test_strategy_stats_rank_strategies_by_success_rate(store):
    for strategy, outcome in [
        ("pin-version", "fixed"),
        ("pin-version", "fixed"),
        ("swap-package", "not_fixed"),
        ("swap-package", "fixed"),
        ("pin-version", "not_fixed"),
    ]:
        store.record_failure(
            FailureRecord(
                error_class="dependency",
                message="No matching distribution for 'x==9'",
                strategy=strategy,
                outcome=outcome,
            )
        )
    store.record_failure(
        FailureRecord(error_class="syntax", message="bad", strategy="regenerate", outcome="fixed")
    )
    stats = store.strategy_stats("dependency")
    assert [(s.strategy, s.attempts, s.successes) for s in stats] == [
        ("pin-version", 3, 2),
        ("swap-package", 2, 1),
    ]
    assert stats[0].rate == pytest.approx(2 / 3)
    assert store.failures("dependency")[0].signature == "No matching distribution for <str>"
    assert store.strategy_stats("timeout") == []


def test_dependency_edges_aggregate_counts_and_outcomes(store):
    store.add_dependency_edges(["pypdf==7.1.1"], ["PDF text extraction"], "success")
    store.add_dependency_edges(["PyPDF"], ["pdf text extraction", "pdf metadata"], "failure")
    edges = {(e.package, e.feature): (e.count, e.successes, e.failures) for e in store.dependency_edges()}
    assert edges == {("pypdf", "pdf text extraction"): (2, 1, 1), ("pypdf", "pdf metadata"): (1, 0, 1)}
    assert len(store.dependency_edges(feature="pdf metadata")) == 1
    with pytest.raises(ValueError, match="outcome must be"):
        store.add_dependency_edges(["x"], ["y"], "maybe")


def test_templates_and_benchmarks_are_stored(store):
    tid = store.add_template(Template(name="text-transform", category="text", files={"server.py": "..."}))
    assert [t.id for t in store.list_templates("text")] == [tid] and store.list_templates("data") == []
    store.add_benchmark(
        BenchmarkRow(category="text", build_seconds=12.5, iterations=2, tokens=900, tool_latency_ms=4)
    )
    assert [(b.build_seconds, b.iterations) for b in store.benchmarks("text")] == [(12.5, 2)]
    store.optimize()
    assert store.benchmarks("text")[0].tokens == 900


def test_bad_input_gets_a_specific_error(store, tmp_path):
    with pytest.raises(ValueError, match="server_name 'Bad Name!'"):
        _case("Bad Name!", "x", [])
    with pytest.raises(ValueError, match="SearchQuery is empty"):
        SearchQuery()
    with pytest.raises(ValueError, match="query is empty"):
        store.find_similar("   ")
    with pytest.raises(ValueError, match="passed .* exceeds total"):
        ValidationSummary(passed=4, total=3)
    with pytest.raises(RepositoryError, match="non-empty"):
        KnowledgeStore.open("")
    from knowledge.embed import SentenceTransformerEmbedder

    with pytest.raises(EmbeddingError, match="neither an existing directory nor a known package"):
        SentenceTransformerEmbedder(str(tmp_path / "no-model")).embed(["x"])


def test_reopening_with_another_model_re_embeds_every_case_into_a_new_table(store):
    from knowledge.embed import HashingEmbedder

    store.add_case(_case("pdf-reader", "Read text from PDF files", ["pypdf"]))
    store.add_case(_case("csv-stats", "Summarize the columns of a CSV file", []))
    seen: list[tuple[int, int]] = []
    again = KnowledgeStore.open(store.uri, embedder=HashingEmbedder(), progress=lambda d, t, m: seen.append((d, t)))
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    meta = again.meta()
    assert meta["embedding_model"] == "hashing-256" and meta["embedding_dim"] == "256"
    assert meta["cases_table"] != "cases" and "cases" not in again._db.list_tables().tables  # no mixed vectors
    assert again.find_similar("read text from pdf files")[0].case.server_name == "pdf-reader"
    assert KnowledgeStore.open(store.uri, embedder=HashingEmbedder(), progress=lambda *a: seen.append(a)).case_count() == 2
    assert len(seen) == 3  # the second open found nothing to redo


@pytest.mark.parametrize("kwargs, words", [({"query": "   "}, "empty"), ({"query": 42}, "str or SearchQuery"),
                                           ({"query": "pdf", "limit": 0}, "limit"),
                                           ({"query": "pdf", "mode": "fuzzy"}, "mode")])
def test_malformed_searches_raise_a_knowledge_error_saying_what_is_accepted(store, kwargs, words):
    from knowledge.errors import KnowledgeError

    with pytest.raises(KnowledgeError, match=words):
        store.find_similar(**kwargs)
