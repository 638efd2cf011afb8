"""The BuildReport: everything one build did, as data, with a plain-text rendering."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Literal

from pydantic import BaseModel, Field

from builder.llm.base import Usage
from builder.loop import HealAttempt, Turn, ValidationDigest
from builder.requirement import Requirement


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
    """How the reused case was found: "exact" or "similar (score ...)"."""
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


