"""The reuse phases of a build, as a mixin of the pipeline's build: exact repeat, candidates, decisions, deploy.

builder.reuse.decide says which case serves a request; this module runs the decision inside a
build: it searches, re-validates the chosen case in the sandbox and deploys it, and fills the
report's candidate verdicts, tool mapping and notes.
"""

from __future__ import annotations

from typing import Any

import anyio

from builder.draft import ServerDraft
from builder.loop import with_required_cases
from builder.requirement import Requirement
from builder.reuse.decide import (
    NO_MODEL_THRESHOLDS,
    CandidateVerdict,
    ReuseDecision,
    check_decision,
    decide_without_model,
    renamed,
    shortlist,
)
from knowledge.models import Match, SearchFilters, SearchQuery, SuccessCase
from knowledge.text import requirement_hash

REUSE_THRESHOLD = 0.75
"""Least hybrid score (knowledge.search) at which a stored case having every tool the caller named is reused
without a model."""


class ReusePhase:
    """Reuse methods of a build; the build supplies params, report, phase, knowledge, deploy, register, validate."""

    params: dict[str, Any]
    request: str
    report: Any
    ctx: Any
    foundry: Any
    work: Any
    deadline: float
    flagged: set[str]
    matches: list[Match]
    cover: list[Any]
    reused_case: SuccessCase | None

    # -- reuse ----------------------------------------------------------------------------------------------------
    async def reuse_exact(self) -> bool:
        """Reuse the case stored for this very request, unless that reuse was reported false."""
        with self.phase("reuse", 0.02, "looking for an exact repeat"):
            exact = await self.knowledge("find_exact", self.request)
            rhash = requirement_hash(self.request)
            self.flagged = {case_id for h, case_id in await self.knowledge("flagged_pairs") if h == rhash}
        if exact is None or exact.verdict != "passed":
            return False
        if exact.id in self.flagged:
            self.report.notes.append(f"case {exact.id} was reported as a false reuse of this request; not reused")
            return False
        return await self.reuse(exact, "exact", 1.0)

    async def candidates(self) -> list[Match]:
        """The closest verified cases by meaning, for the analyst or the no-model decision (verdicts for the rest)."""
        from knowledge.coverage import coverage

        text = self.params["description"]
        with self.phase("reuse", 0.03, "searching the repository"):
            matches = await self.knowledge("find_similar", text, 5, SearchFilters(verdict="passed"))
            store = self.foundry.knowledge
            self.cover = await anyio.to_thread.run_sync(lambda: coverage(store.embedder, text, [m.case for m in matches]))
        self.matches = matches
        shown, dropped = shortlist(matches, self.cover, self.flagged)
        self.report.candidates = dropped
        return shown

    async def reuse_without_model(self, candidates: list[Match]) -> bool:
        """No model: reuse by the tools the caller named, else (description only) by meaning when it is strong."""
        if self.params.get("tools"):
            return await self.reuse_similar(None) is True
        model = self.foundry.knowledge.embedder.name
        chosen, verdicts = decide_without_model(self.params["description"], self.matches, self.cover,
                                                NO_MODEL_THRESHOLDS.get(model), self.flagged, model)
        self.report.candidates = verdicts
        if chosen is None:
            return False
        c = next(c for c in self.cover if c.case_id == chosen.case.id)
        if await self.reuse(chosen.case, f"meaning (similarity {c.similarity:.2f}, lead {c.margin:.2f}: {c.view[:60]!r})",
                            c.similarity):
            return True
        self._verdict(chosen.case.id, False, "covers the request but failed re-validation (see notes)")
        return False

    async def reuse_chosen(self, decision: ReuseDecision, candidates: list[Match]) -> bool:
        """Deploy the candidate the analyst chose, if any and if it still validates; verdicts for every candidate."""
        explicit = [t for t in self.params.get("tools") or [] if t.isidentifier()]
        problem = check_decision(decision, candidates, explicit) if decision.case_id else ""
        shown = []
        for m in candidates:
            chosen = m.case.id == decision.case_id
            why = (f"chosen by the analyst, not usable: {problem}" if chosen and problem else
                   f"chosen by the analyst: {decision.reason}" if chosen else f"the analyst: {decision.reason}")
            shown.append(CandidateVerdict(case_id=m.case.id, server_name=m.case.server_name, score=m.score, why=why))
        self.report.candidates = shown + self.report.candidates
        if not decision.case_id or problem:
            if problem:
                self.report.notes.append(f"the analyst's choice was not used: {problem}; building anew")
            return False
        match = next(m for m in candidates if m.case.id == decision.case_id)
        self.report.tool_mapping = decision.mapping
        for r in renamed(decision.mapping, explicit):
            self.report.notes.append(f"your tool name {r.requested!r} is served by the stored tool {r.tool!r}: the "
                                     "deployed server keeps its own tool names (see tool_mapping)")
        # The caller's examples name the tools they asked for; they bind the stored tools the analyst mapped them to.
        names = {m.requested: m.tool for m in decision.mapping}
        examples = [{**e, "tool": names.get(e.get("tool"), e.get("tool"))} for e in self.params.get("examples") or []]
        if await self.reuse(match.case, f"model (score {match.score:.2f}: {decision.reason[:120]})", match.score,
                            examples=examples):
            self._verdict(match.case.id, True, f"reused: {decision.reason}")
            return True
        self.report.tool_mapping = []
        self._verdict(match.case.id, False, "chosen by the analyst but failed re-validation; building anew")
        return False

    def _verdict(self, case_id: str, reused: bool, why: str) -> None:
        for v in self.report.candidates:
            if v.case_id == case_id:
                v.reused, v.why = reused, why

    async def reuse_similar(self, req: Requirement | None) -> bool | list[Any]:
        """Reuse a verified case having every requested tool; returns True when reused, else the matches seen."""
        wanted = req.tool_names() if req else [t for t in self.params.get("tools", []) if t.isidentifier()]
        if not wanted:
            return []
        query = SearchQuery(text=self.params["description"], tool_names=wanted,
                            tool_params=req.param_names() if req else [],
                            dependencies=req.dependency_names() if req else [])
        with self.phase("reuse", 0.08, "searching the repository"):
            matches = await self.knowledge("find_similar", query, 5, SearchFilters(verdict="passed"))
        for m in matches:
            covered = set(wanted) <= {t.name for t in m.case.tools}
            if m.score >= REUSE_THRESHOLD and covered and m.case.id not in self.flagged:
                if await self.reuse(m.case, f"tools (score {m.score:.2f}: {m.reason})", m.score):
                    return True
        return matches

    async def reuse(self, case: SuccessCase, how: str, score: float, *, examples: list[Any] | None = None) -> bool:
        """Re-validate a stored case and deploy it; False (with a note) when it no longer validates."""
        from sandbox.errors import EnvBuildError

        with self.phase("reuse", 0.1, f"re-validating stored case {case.server_name}"):
            draft = _case_draft(case)
            if draft is None:
                self.report.notes.append(f"case {case.id} has neither files nor a deployed directory; not reused")
                return False
            # The caller's example calls bind a reused server exactly as they bind a generated one.
            draft = with_required_cases(draft, list(self.params.get("examples") or [] if examples is None else examples))
            directory = draft.write_to(self.work / "reuse")
            try:
                env = await self.foundry.envs.ensure(draft.requirements(), log=self.ctx.log)
                async with self.foundry.envs.in_use(env):  # held until deploy has copied it
                    report = await self.validate(directory, env)
                    if report.verdict != "pass":
                        self.report.notes.append(f"case {case.id} ({case.server_name}) failed re-validation; "
                                                 "building anew")
                        self.ctx.log(self.report.notes[-1])
                        return False
                    with self.phase("deploy", 0.9, "deploying the reused server"):
                        # A name the caller gave explicitly wins, as it does for a generated server.
                        self.deploy(self.params.get("name") or case.server_name, draft, env, report,
                                    summary=case.summary, reused=case.id)
            except EnvBuildError as e:
                self.report.notes.append(f"case {case.id} not reused: its dependencies no longer install: {e}")
                return False
        with self.phase("learn", 0.95, "counting the reuse"):
            await self.knowledge("mark_reused", case.id)
        await self.register()
        self.report.ok, self.report.outcome = True, "reused"
        self.report.reused_case_id, self.report.case_id, self.report.reuse = case.id, case.id, how
        self.report.reuse_score = round(score, 4)
        self.reused_case = case
        self.ctx.log(f"reused case {case.id} ({how})")
        return True


def _case_draft(case: SuccessCase) -> ServerDraft | None:
    """The files of a stored case, from the case itself or its deployed directory."""
    from pathlib import Path

    if case.files:
        return ServerDraft(files=case.files)
    if case.deployed_dir and Path(case.deployed_dir).is_dir():
        return ServerDraft.read_from(Path(case.deployed_dir))
    return None
