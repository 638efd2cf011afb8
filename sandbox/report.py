"""The validator's verdict as data: what the server under test offered, every check made, and a text rendering."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.limits import LimitState
from sandbox.scan import Finding

FailureClass = Literal["dependency", "syntax", "import", "runtime", "timeout", "protocol", "assertion", "security"]
FAILURE_CLASSES: tuple[str, ...] = (
    "dependency", "syntax", "import", "runtime", "timeout", "protocol", "assertion", "security",
)


class Check(BaseModel):
    """One thing the validator verified, with its outcome and, when it failed, the class of failure."""

    name: str
    """What was checked, e.g. "initialize", "tool add: definition", "case #0 add"."""
    passed: bool
    reason: str
    """One readable line: what was seen, and on failure what to fix."""
    seconds: float = 0.0
    failure_class: FailureClass | None = None
    """Set exactly when the check failed; drives the healing strategy."""


class ToolInfo(BaseModel):
    """A tool as the server listed it."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = Field(default_factory=dict)
    """readOnlyHint, destructiveHint, idempotentHint, openWorldHint (and title) when the server set them."""


class ResourceInfo(BaseModel):
    """A resource (or resource template, with `template` set) as the server listed it."""

    uri: str
    name: str | None = None
    description: str | None = None
    mime_type: str | None = None
    template: bool = False


class PromptInfo(BaseModel):
    """A prompt as the server listed it."""

    name: str
    description: str | None = None
    arguments: list[str] = Field(default_factory=list)


class CaseResult(BaseModel):
    """The outcome of one test case: the call made, what came back and how long it took."""

    tool: str = ""
    """The tool called; empty for a resource or prompt case."""
    resource: str | None = None
    """The URI read, for a resource case."""
    prompt: str | None = None
    """The prompt got, for a prompt case."""
    name: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    expected: dict[str, Any] | None = None
    """The case's expectation in cases.json form ({"equals": 3}); None means 'must succeed'."""
    actual: Any = None
    """The result's value (see sandbox.cases.result_value), or the error text for an error result."""
    is_error: bool = False
    passed: bool
    latency_ms: float = 0.0
    reason: str

    def call(self) -> str:
        """The request in one line: `add({"a": 1})`, `resource http-status://404` or `prompt explain({...})`."""
        if self.resource is not None:
            return f"resource {self.resource}"
        args = json.dumps(self.arguments, ensure_ascii=False)[:300]
        return f"prompt {self.prompt}({args})" if self.prompt is not None else f"{self.tool}({args})"


class ValidationReport(BaseModel):
    """Everything one validation run learned about a server, and its verdict."""

    target: str
    """The server directory or the command line validated."""
    backend: str
    started: datetime
    finished: datetime
    duration: float
    """Wall-clock seconds for the whole validation."""
    server_info: dict[str, Any] | None = None
    protocol_version: str | None = None
    capabilities: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolInfo] = Field(default_factory=list)
    resources: list[ResourceInfo] = Field(default_factory=list)
    prompts: list[PromptInfo] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    cases: list[CaseResult] = Field(default_factory=list)
    stderr_tail: str = ""
    """The last few KiB of the server's stderr."""
    limits: list[LimitState] = Field(default_factory=list)
    """The whole-sandbox limits (disk, memory, processes, CPU) and whether each was in force."""
    verdict: Literal["pass", "fail"]

    def failures(self) -> list[Check]:
        """The checks that failed, in the order they ran."""
        return [c for c in self.checks if not c.passed]

    @property
    def failure_class(self) -> FailureClass | None:
        """The class of the first failure (the root cause; later ones often follow from it), or None on a pass."""
        failed = self.failures()
        return failed[0].failure_class if failed else None

    def render(self, *, stderr_lines: int = 10) -> str:
        """Readable plain text for the CLI: one line per check, findings, stderr on failure, then the verdict."""
        head = f"Validation of {self.target} ({self.backend})"
        if self.server_info:
            head += f": server {self.server_info.get('name', '?')} {self.server_info.get('version', '')}".rstrip()
        if self.protocol_version:
            head += f", protocol {self.protocol_version}"
        lines = [head]
        width = max((len(c.name) for c in self.checks), default=0)
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            klass = f" [{c.failure_class}]" if c.failure_class else ""
            lines.append(f"  {mark}  {c.name.ljust(width)}  {c.seconds * 1000:7.0f} ms  {c.reason}{klass}")
        if self.findings:
            lines.append("  findings:")
            lines.extend(f"    {f.severity:<8} {f.rule:<22} {f.where()}  {f.message}" for f in self.findings)
        missing = [f"{state.name}: {state.detail}" for state in self.limits if not state.in_force]
        if missing:
            lines.append("  limits NOT in force for this sandbox:")
            lines.extend(f"    {line}" for line in missing)
        if self.verdict == "fail" and self.stderr_tail.strip():
            lines.append("  stderr (last lines):")
            lines.extend(f"    | {line}" for line in self.stderr_tail.rstrip().splitlines()[-stderr_lines:])
        failed = self.failures()
        tally = f"{len(self.checks) - len(failed)}/{len(self.checks)} checks passed"
        if self.verdict == "pass":
            lines.append(f"VERDICT: PASS ({tally}, {len(self.tools)} tools, {self.duration:.2f} s)")
        else:
            lines.append(f"VERDICT: FAIL [{self.failure_class}] ({tally}, {self.duration:.2f} s): {failed[0].reason}"
                         if failed else f"VERDICT: FAIL ({tally})")
        return "\n".join(lines)


class Recorder:
    """Collects a validation's checks in order and forwards log lines and progress to the caller."""

    def __init__(self, log: Callable[[str], None] | None, progress: Callable[[float, str], None] | None) -> None:
        """Forward log lines to `log` and progress to `progress` (either may be None)."""
        self.checks: list[Check] = []
        self._log = log
        self._progress = progress

    def check(self, name: str, passed: bool, reason: str, seconds: float = 0.0,
              failure_class: FailureClass | None = None) -> Check:
        """Record one check (its class only when it failed) and log it as PASS or FAIL."""
        item = Check(name=name, passed=passed, reason=reason, seconds=round(seconds, 4),
                     failure_class=None if passed else failure_class)
        self.checks.append(item)
        self.log(f"{'PASS' if passed else 'FAIL'} {name}: {reason}")
        return item

    def log(self, line: str) -> None:
        """Pass one line to the caller's log."""
        if self._log is not None:
            self._log(line)

    def progress(self, fraction: float, message: str) -> None:
        """Pass the validation's progress (0..1) to the caller."""
        if self._progress is not None:
            self._progress(fraction, message)
