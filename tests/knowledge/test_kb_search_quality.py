"""Search quality over the starter library with a hand-written paraphrase set (users' words, not descriptions)."""

from __future__ import annotations

import json
from pathlib import Path

from knowledge.starters import list_starters

PARAPHRASES = json.loads((Path(__file__).parent / "paraphrases.json").read_text())["queries"]


def _recall(store, mode: str) -> tuple[float, float]:
    names = {s.name: s.server_name for s in list_starters()}
    at1 = at5 = 0
    for query, want in PARAPHRASES:
        got = [m.case.server_name for m in store.find_similar(query, limit=5, mode=mode)]
        at1 += bool(got) and got[0] == names[want]
        at5 += names[want] in got
    return at1 / len(PARAPHRASES), at5 / len(PARAPHRASES)


def test_paraphrase_set_is_large_and_covers_every_starter():
    starters = {s.name for s in list_starters()}
    assert len(PARAPHRASES) >= 40
    assert {want for _, want in PARAPHRASES} == starters
    descriptions = {s.description.lower() for s in list_starters()}
    assert not any(q.lower() in descriptions for q, _ in PARAPHRASES)


def test_hybrid_recall_at_1_is_at_least_0_9(starter_store, capsys):
    results = {mode: _recall(starter_store, mode) for mode in ("hybrid", "vector", "fts")}
    with capsys.disabled():
        for mode, (r1, r5) in results.items():
            print(f"\n{mode:>6}: recall@1 {r1:.3f}  recall@5 {r5:.3f}  ({len(PARAPHRASES)} queries)", end="")
        print()
    assert results["hybrid"][0] >= 0.9
    assert results["hybrid"][1] >= results["hybrid"][0]


def test_match_reports_components_and_reason(starter_store):
    top = starter_store.find_similar("extract the text of a pdf file")[0]
    assert top.case.server_name == "pdf-text"
    assert top.components.vector > 0.3 and top.components.fts > 0
    assert 0 < top.score <= 1
    assert "meaning" in top.reason and "keywords" in top.reason


def test_structured_query_uses_features_and_dependencies(starter_store):
    from knowledge.models import SearchQuery

    q = SearchQuery(text="convert documents", tool_names=["markdown_to_html"], dependencies=["markdown"])
    top = starter_store.find_similar(q, limit=3)
    assert top[0].case.server_name == "markdown-html"
    assert top[0].components.dependencies == 1.0
    assert top[0].components.features == 1.0
    assert "uses: markdown" in top[0].reason
    features_only = starter_store.find_similar(SearchQuery(tool_params=["from_timezone"]), limit=1)
    assert features_only[0].case.server_name == "timezones"
