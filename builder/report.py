"""The BuildReport: everything one build did, as data, with a plain-text rendering."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Literal

from pydantic import BaseModel, Field

from builder.llm.base import Usage
from builder.loop import HealAttempt, Turn, ValidationDigest
from builder.requirement import Requirement
from builder.reuse.decide import CandidateVerdict, CapabilityMapping


class Deployment(BaseModel):
    """Where the build put the server and how to run it."""

    name: str
    version: str
    directory: str
    command: list[str]
    client_config: dict[str, Any]


class BuildReport(BaseModel):
    """Everything one build did: every turn, findings, validation, failures, strategies, reuse, usage, timings."""

    ok: bool
    outcome: Literal["built", "reused", "failed"]
    request: str
    error: str | None = None
    requirement: Requirement | None = None
    reused_case_id: str | None = None
    reuse: str | None = None
    """How the reused case was found: "exact", "model: ...", "meaning: ..." or "tools: ..."."""
    reuse_score: float | None = None
    """The score behind the reuse (1.0 for an exact repeat)."""
    candidates: list[CandidateVerdict] = Field(default_factory=list)
    """Stored cases considered for reuse, each with why it was or was not reused."""
    tool_mapping: list[CapabilityMapping] = Field(default_factory=list)
    """For a reuse chosen by the analyst: which stored tool serves each requested capability. Tool names are
    the stored server's own; a name the caller gave that differs is listed here, never renamed."""
    fresh: bool = False
    """The caller asked for a new build: the repository was not consulted for reuse."""
    turns: list[Turn] = Field(default_factory=list)
    heal_attempts: list[HealAttempt] = Field(default_factory=list)
    validation: ValidationDigest | None = None
    """The final validation of the deployed server."""
    validation_text: str = ""
    """The final validation report rendered."""
    deployment: Deployment | None = None
    case_id: str | None = None
    """The repository case stored (or reused)."""
    coder: str = ""
    """Who answered the build's model requests: the configured provider's name ("openai", "replay"), or "client"
    (its caller, through stored questions); empty when none was needed."""
    usage: Usage = Field(default_factory=Usage)
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds per phase."""
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)

    def render(self) -> str:
        """Readable plain text for the CLI."""
        head = {"built": "BUILT", "reused": "REUSED", "failed": "FAILED"}[self.outcome]
        lines = [f"{head}: {textwrap.shorten(self.request.splitlines()[0], 100)} ({self.seconds:.1f} s, {self.usage.calls} LLM calls, "
                 f"{self.usage.prompt_tokens + self.usage.completion_tokens} tokens)"]
        if self.reused_case_id:
            lines.append(f"  reused case {self.reused_case_id} ({self.reuse})")
        if self.fresh:
            lines.append("  fresh build requested: the repository was not consulted for reuse")
        for c in self.candidates:
            lines.append(f"  candidate {c.server_name} ({c.case_id[:12]}, score {c.score:.2f}): "
                         f"{'REUSED' if c.reused else 'not reused'}: {c.why}")
        lines += [f"  tool mapping: {m.requested} -> {m.tool}" for m in self.tool_mapping]
        for t in self.turns:
            lines.append(f"  turn {t.number}: {t.outcome}; files {', '.join(t.files)}")
            lines += [f"    finding [{f.error_class}] {f.where} {f.message}" for f in t.findings if f.blocking]
            if t.validation:
                lines.append(f"    validation {t.validation.verdict} {t.validation.checks_passed}/"
                             f"{t.validation.checks_total} checks")
                lines += [f"    failed: {x}" for x in t.validation.failed[:5]]
            if t.heal:
                fits = f"/{t.heal.kind}" if t.heal.kind else ""
                lines.append(f"    heal [{t.heal.error_class}{fits}] -> {t.heal.strategy}")
        if self.deployment:
            d = self.deployment
            lines.append(f"  deployed {d.name} v{d.version} at {d.directory}")
            lines.append("  client config: " + json.dumps(d.client_config))
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines)


