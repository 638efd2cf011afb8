# ruff: noqa: F811 - the fixtures foundry, llm_env and web are shared with the pipeline tests
"""Reuse with a model, scripted at the wire: the analyst sees the stored candidates and chooses one or none.

The repository holds the starter library (stored directly: the starters ship validated);
the LLM is the scripted OpenAI-compatible endpoint, so every assertion about what the model
was shown reads the real HTTP request the pipeline sent.
"""

from __future__ import annotations

import json
import re

import pytest
from test_pipeline import FIXED, REQUEST, REQUIREMENT, foundry, llm_env, run_build, web  # noqa: F401

from builder.jobs import JobState
from builder.params import build_params


@pytest.fixture
def seeded(foundry):
    from knowledge.seed import starter_case
    from knowledge.starters import list_starters

    foundry.knowledge.add_cases([starter_case(s) for s in list_starters()])
    return foundry


def candidates_in(body: dict) -> dict[str, str]:
    """server_name -> case_id of the candidates shown in a chat request."""
    text = body["messages"][-1]["content"]
    return {m.group(2): m.group(1) for m in re.finditer(r'"case_id": "([0-9a-f]+)", "server_name": "([a-z-]+)"', text)}


def choose(server: str, mapping: list[dict], requirement: dict | None = None):
    """A scripted analyst that picks the candidate named `server` (failing loudly if it was not shown)."""
    def answer(body: dict) -> str:
        shown = candidates_in(body)
        if server not in shown:
            return json.dumps({"error": f"{server} not among the candidates {sorted(shown)}"})
        return json.dumps({"reuse": {"case_id": shown[server], "mapping": mapping,
                                     "reason": f"{server} does every requested thing"}, "requirement": requirement})
    return answer


@pytest.mark.anyio
async def test_the_analyst_sees_the_candidates_and_a_chosen_one_is_served_without_a_code_request(seeded, llm_env):
    llm_env.script([choose("markdown-html", [{"requested": "md_to_html", "tool": "markdown_to_html"}])])
    params = build_params("turn a Markdown README into an HTML page", tools=["md_to_html"],
                          examples=[{"tool": "md_to_html", "arguments": {"markdown_text": "# Hi"},
                                     "expect": {"equals": "<h1>Hi</h1>"}}])
    state, report, _ = await run_build(seeded, params)
    assert state == JobState.succeeded and report.outcome == "reused", report.render()
    assert llm_env.calls == 1 and report.turns == []  # the analysis only: no code was requested
    prompt = llm_env.requests[0]["messages"][-1]["content"]
    assert "markdown-html" in candidates_in(llm_env.requests[0]) and '"markdown_to_html"' in prompt
    assert '"params"' in prompt and '"returns"' in prompt and '"score"' in prompt
    assert report.reuse.startswith("model") and [(m.requested, m.tool) for m in report.tool_mapping] == [
        ("md_to_html", "markdown_to_html")]
    assert any("'md_to_html' is served by the stored tool 'markdown_to_html'" in n for n in report.notes)
    chosen = [c for c in report.candidates if c.reused]
    assert [c.server_name for c in chosen] == ["markdown-html"] and "reused" in chosen[0].why
    deployed = json.loads((seeded.settings.servers_dir / "markdown-html" / "1" / "cases.json").read_text())
    # The caller's example binds the stored tool it was mapped to; the stored name is kept, never renamed.
    assert {"tool": "markdown_to_html", "arguments": {"markdown_text": "# Hi"},
            "expect": {"equals": "<h1>Hi</h1>"}} in deployed["cases"]
    assert "tool mapping: md_to_html -> markdown_to_html" in report.render()


@pytest.mark.anyio
async def test_an_answer_choosing_none_leads_to_a_normal_build(seeded, llm_env):
    none = {"reuse": {"case_id": None, "mapping": [], "reason": "text-statistics returns no line count in this shape"},
            "requirement": REQUIREMENT}
    llm_env.script([json.dumps(none), FIXED])
    state, report, _ = await run_build(seeded, build_params(REQUEST))
    assert state == JobState.succeeded and report.outcome == "built", report.render()
    assert llm_env.calls == 2 and len(report.turns) == 1  # analysis (with candidates) and one code request
    assert "text-statistics" in candidates_in(llm_env.requests[0])
    shown = [c for c in report.candidates if c.why.startswith("the analyst")]
    assert shown and all(not c.reused and "no line count" in c.why for c in shown)


@pytest.mark.anyio
async def test_a_chosen_case_that_fails_re_validation_falls_back_to_building_and_says_so(seeded, llm_env):
    # The caller's example expects text_stats' shape; the stored text-statistics tool answers another one.
    example = {"tool": "text_stats", "arguments": {"text": "a b"},
               "expect": {"equals": {"words": 2, "characters": 3, "lines": 1}}}
    llm_env.script([choose("text-statistics", [{"requested": "text_stats", "tool": "text_statistics"}]),
                    json.dumps(REQUIREMENT), FIXED])
    state, report, _ = await run_build(seeded, build_params(REQUEST, tools=["text_stats"], examples=[example]))
    assert state == JobState.succeeded and report.outcome == "built", report.render()
    assert llm_env.calls == 3  # the choice, then the plain analysis (the answer had no requirement), then code
    assert any("failed re-validation" in n for n in report.notes)
    verdict = next(c for c in report.candidates if c.server_name == "text-statistics")
    assert not verdict.reused and "failed re-validation; building anew" in verdict.why
    assert report.tool_mapping == [] and report.deployment.name == "text_stats"


@pytest.mark.anyio
async def test_a_fresh_build_never_consults_the_repository(seeded, llm_env):
    llm_env.script([json.dumps(REQUIREMENT), FIXED])
    state, report, _ = await run_build(seeded, build_params(REQUEST, fresh=True))
    assert state == JobState.succeeded and report.outcome == "built" and report.fresh, report.render()
    assert candidates_in(llm_env.requests[0]) == {} and report.candidates == []
    assert "fresh build requested" in report.render()
