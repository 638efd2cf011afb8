"""The CodeReAct loop: Code (LLM writes files) -> Reason (static checks) -> Act (sandbox validation), healed per turn.

One turn reads top to bottom in `run_loop`: ask for a draft, check it without running it,
run it in the sandbox, and on failure classify what went wrong and pick a healing
strategy whose instruction goes into the next turn's prompt with the previous code.
Every turn and every healing attempt is recorded for the build report and the
failure-analysis table.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from builder.draft import ServerDraft
from builder.errors import LLMError
from builder.heal import CLASS_PRIORITY, ClassifiedFailure, HealPlan, from_report, plan, sharpen
from builder.llm.base import ChatMessage, LLMProvider, Usage
from builder.llm.client import asking
from builder.llm.progress import at_most_every, listening
from builder.prompts import render
from builder.reason import Finding, reason
from builder.requirement import Requirement
from knowledge.models import StrategyStat
from sandbox.errors import EnvBuildError
from sandbox.report import ValidationReport
from sandbox.spec import Limits

CODE_ATTEMPTS = 2
"""complete_json attempts per Code step (a malformed draft is re-asked once within the turn)."""
MIN_TURN_SECONDS = 20.0
"""A turn is not started with less than this left of the build's time budget."""


class ValidationDigest(BaseModel):
    """The part of a ValidationReport a turn record keeps."""

    verdict: str
    checks_passed: int
    checks_total: int
    failed: list[str] = Field(default_factory=list)
    """"<check>: <reason> [class]" for each failed check."""
    seconds: float = 0.0

    @classmethod
    def of(cls, r: ValidationReport) -> ValidationDigest:
        """Digest a full report."""
        failed = [f"{c.name}: {c.reason} [{c.failure_class}]" for c in r.failures()]
        return cls(verdict=r.verdict, checks_passed=len(r.checks) - len(failed), checks_total=len(r.checks),
                   failed=failed, seconds=r.duration)


class HealAttempt(BaseModel):
    """One healing strategy applied to one class of failure, and whether the next turn was rid of it."""

    turn: int
    error_class: str
    message: str
    strategy: str
    outcome: Literal["fixed", "not_fixed", "pending"] = "pending"
    """pending: no later turn ran (turns or time ran out), so the strategy was never applied."""


class Turn(BaseModel):
    """One Code -> Reason -> Act turn."""

    number: int
    files: dict[str, int] = Field(default_factory=dict)
    """Generated file -> size in bytes."""
    digest: str = ""
    findings: list[Finding] = Field(default_factory=list)
    validation: ValidationDigest | None = None
    failures: list[ClassifiedFailure] = Field(default_factory=list)
    heal: HealPlan | None = None
    """The strategy chosen for the next turn."""
    outcome: Literal["passed", "blocked", "failed"] = "failed"
    """passed: validated; blocked: static findings stopped it before running; failed: validation failed."""
    seconds: dict[str, float] = Field(default_factory=dict)


class LoopResult(BaseModel):
    """What the loop ended with."""

    ok: bool
    turns: list[Turn]
    heal_attempts: list[HealAttempt]
    draft: ServerDraft | None = None
    report: ValidationReport | None = None
    env: Any = None
    """sandbox.env.Environment of the passing draft."""
    directory: Path | None = None
    """Where the passing draft was written."""
    stop_reason: str = ""
    llm_error: str | None = None
    """Set when the loop stopped because the LLM gave no usable draft."""


@dataclass
class LoopDeps:
    """What the loop needs from the rest of the builder, passed in so the loop stays one readable function."""

    provider: LLMProvider
    usage: Usage
    backend: Any
    envs: Any
    pypi: Callable[[str], Awaitable[Any]] | None
    strategy_stats: Callable[[str], list[StrategyStat]]
    work_dir: Path
    max_turns: int
    deadline: float
    """`clock()` value by which the loop must stop starting turns."""
    clock: Callable[[], float] = time.monotonic
    """The build's clock: monotonic seconds, less the time spent waiting for a client's answers."""
    network: bool = False
    log: Callable[[str], None] = print
    progress: Callable[[float, str], None] = lambda f, m: None
    validate_seconds: float = 120.0
    init_timeout: float = 30.0
    """Seconds a draft's server has to answer initialize."""
    call_timeout: float = 30.0
    """Seconds each case's call has."""
    limits: Limits = field(default_factory=Limits)
    """The sandbox's limits (its wall_seconds is cut to what is left of the build's time)."""
    notes: list[str] = field(default_factory=list)
    """What the code writer must know about the requirement beyond its JSON (e.g. why a name was imposed)."""
    tried: dict[str, list[str]] = field(default_factory=dict)
    required_cases: list[dict[str, Any]] = field(default_factory=list)
    """The caller's example calls (cases format): added to every draft's cases, so a draft cannot pass
    by testing itself against its own mistakes."""


async def run_loop(req: Requirement, research: str, examples: str, deps: LoopDeps) -> LoopResult:
    """Run turns until a draft validates, the turns run out or the time budget is spent."""
    from sandbox.validate import ValidationTarget, validate_server

    turns: list[Turn] = []
    attempts: list[HealAttempt] = []
    feedback = ""
    previous: ServerDraft | None = None
    for n in range(1, deps.max_turns + 1):
        if deps.deadline - deps.clock() < MIN_TURN_SECONDS:
            return LoopResult(ok=False, turns=turns, heal_attempts=attempts, draft=previous,
                              stop_reason=f"time budget spent after {n - 1} turn(s)")
        turn = Turn(number=n)
        turns.append(turn)
        span = (n - 1) / deps.max_turns, 1 / deps.max_turns

        # Code: the LLM writes every file of the server.
        deps.progress(span[0], f"turn {n}: writing code")
        t = time.perf_counter()
        writing = at_most_every(1.0, lambda p, n=n, at=span[0]: deps.progress(
            at, f"turn {n}: writing code ({p.tokens} tokens in {p.seconds:.0f} s)"))
        try:
            # A client answering instead of a model sees a first draft asked as "code", every later one as "fix".
            with listening(writing), asking("fix" if feedback else "code", turn=n, turns_left=deps.max_turns - n):
                draft = await _code(deps, req, research, examples, feedback)
        except LLMError as e:
            # Keep what the earlier turns learned: the caller records them as for any failed build.
            turns.pop()
            return LoopResult(ok=False, turns=turns, heal_attempts=attempts, draft=previous, llm_error=str(e),
                              stop_reason=f"the LLM kept failing in turn {n}: {e}")
        turn.seconds["code"] = time.perf_counter() - t
        turn.files = {k: len(v.encode()) for k, v in draft.files.items()}
        draft = with_required_cases(draft, deps.required_cases)
        turn.digest = draft.digest()
        directory = draft.write_to(deps.work_dir / f"turn-{n}")
        deps.log(f"turn {n}: draft with {len(draft.files)} files ({', '.join(sorted(draft.files))})")

        # Reason: parse, lint, scan and vet without running anything.
        deps.progress(span[0] + span[1] * 0.2, f"turn {n}: checking the draft")
        t = time.perf_counter()
        checked, pypi_facts = await reason(draft, directory, req, deps.pypi)
        turn.seconds["reason"] = time.perf_counter() - t
        turn.findings = checked.findings
        report: ValidationReport | None = None
        if checked.blocking:
            turn.outcome = "blocked"
            turn.failures = [ClassifiedFailure(error_class=f.error_class, message=f.message, source="reason",
                                               where=f.where) for f in checked.blocking]
            deps.log(f"turn {n}: {len(checked.blocking)} blocking finding(s): "
                     + "; ".join(f"[{f.error_class}] {f.where} {f.message}" for f in checked.blocking[:5]))
        else:
            # Act: build (or reuse) the environment and validate over real MCP in the sandbox.
            deps.progress(span[0] + span[1] * 0.4, f"turn {n}: preparing the environment")
            t = time.perf_counter()
            env, env_error = await _ensure_env(deps, draft)
            turn.seconds["env"] = time.perf_counter() - t
            if env_error:
                turn.failures = [env_error]
            else:
                deps.progress(span[0] + span[1] * 0.6, f"turn {n}: validating in the sandbox")
                t = time.perf_counter()
                remaining = max(10.0, deps.deadline - deps.clock())
                async with deps.envs.in_use(env):
                    report = await validate_server(
                        ValidationTarget(directory=directory), backend=deps.backend, env=env, cases=None,
                        limits=deps.limits.model_copy(update={"wall_seconds": min(deps.validate_seconds, remaining)}),
                        network=deps.network, log=deps.log, init_timeout=deps.init_timeout,
                        call_timeout=deps.call_timeout)
                turn.seconds["validate"] = time.perf_counter() - t
                turn.validation = ValidationDigest.of(report)
                if report.verdict == "pass":
                    turn.outcome = "passed"
                    _resolve(attempts, n, set())
                    deps.log(f"turn {n}: validation passed ({len(report.checks)} checks)")
                    return LoopResult(ok=True, turns=turns, heal_attempts=attempts, draft=draft, report=report,
                                      env=env, directory=directory, stop_reason="validated")
                turn.failures = from_report(report, draft.requirements())
                deps.log(f"turn {n}: validation failed: " + "; ".join(turn.validation.failed[:5]))

        # Heal: the earlier turn's strategy worked if its class is gone; choose the next strategy.
        _resolve(attempts, n, {f.error_class for f in turn.failures})
        turn.failures = sharpen(turn.failures, draft.files)
        turn.heal = plan(turn.failures, deps.strategy_stats, deps.tried, _context(turn.failures, pypi_facts))
        deps.tried.setdefault(turn.heal.error_class, []).append(turn.heal.strategy)
        primary = next(f for f in turn.failures if f.error_class == turn.heal.error_class)
        attempts.append(HealAttempt(turn=n, error_class=turn.heal.error_class, message=primary.message[:1000],
                                    strategy=turn.heal.strategy))
        fits = f"/{turn.heal.kind}" if turn.heal.kind else ""
        deps.log(f"turn {n}: healing [{turn.heal.error_class}{fits}] with strategy {turn.heal.strategy}")
        feedback = render("feedback", turn=n + 1, previous=json.dumps(draft.files, indent=1)[:60_000],
                          failures=_failures_text(turn.failures, report), strategy=turn.heal.strategy,
                          instruction=turn.heal.instruction)
        previous = draft
    # The strategy chosen after the last turn was never applied: it stays pending and is not recorded as tried.
    return LoopResult(ok=False, turns=turns, heal_attempts=attempts, draft=previous,
                      stop_reason=f"no draft validated in {deps.max_turns} turn(s)")


async def _code(deps: LoopDeps, req: Requirement, research: str, examples: str, feedback: str) -> ServerDraft:
    from builder.llm import complete_json

    messages = code_messages(req, research, examples, feedback, deps)
    return await complete_json(deps.provider, messages, ServerDraft, max_attempts=CODE_ATTEMPTS, usage=deps.usage,
                               max_tokens=16_000)


def code_messages(req: Requirement, research: str, examples: str, feedback: str, deps: LoopDeps) -> list[ChatMessage]:
    """The chat that asks for a ServerDraft: the rules, then the requirement, the test environment and the material."""
    notes = "".join(f"Note: {n}\n" for n in deps.notes)
    return [
        ChatMessage(role="system", content=render("code_system")),
        ChatMessage(role="user", content=render("code_user", requirement=req.model_dump_json(indent=1), notes=notes,
                                                environment=validation_environment(req, deps),
                                                research=research or "(none)", examples=examples or "(none)",
                                                feedback=feedback)),
    ]


def validation_environment(req: Requirement, deps: LoopDeps) -> str:
    """What the sandbox gives a draft while its cases run, as the code writer must know it."""
    limits = Limits()
    if deps.network:
        network = ("on: the build allows it. Remote data changes, so match it with contains, matches or schema "
                   "rather than equals.")
    elif req.needs_network:
        network = ("off. The requirement needs the network, but this build does not allow it while validating (the "
                   "build request did not allow network), so every connection fails here: write cases that do not "
                   "need it (bad input refused before any connection, expecting an error) and turn a failed "
                   "connection into a ToolError that says so.")
    else:
        network = "off: every connection attempt fails."
    if req.secrets:
        secrets = (f"none is set, not even {', '.join(req.secrets)}, which the requirement declares (the user "
                   "sets them where the server is deployed). The server must start without them; a tool that needs one "
                   "raises ToolError naming the variable, and a case expects that error.")
    else:
        secrets = "none is set: the environment holds only PATH, HOME, the locale and Python's own settings."
    return render("validation_environment", network=network, secrets=secrets, init_timeout=f"{deps.init_timeout:g}",
                  call_timeout=f"{deps.call_timeout:g}", wall_seconds=f"{deps.validate_seconds:g}",
                  cpu_seconds=limits.cpu_seconds, memory_mb=limits.memory_mb, file_size_mb=limits.file_size_mb,
                  processes=limits.processes)


async def _ensure_env(deps: LoopDeps, draft: ServerDraft) -> tuple[Any, ClassifiedFailure | None]:
    try:
        return await deps.envs.ensure(draft.requirements(), log=deps.log), None
    except EnvBuildError as e:
        return None, ClassifiedFailure(error_class="dependency", message=str(e)[-1500:], source="validation",
                                       where="requirements.txt")


def with_required_cases(draft: ServerDraft, required: list[dict[str, Any]]) -> ServerDraft:
    """The draft with the caller's cases appended to its cases.json (a malformed file is left for the validator)."""
    if not required:
        return draft
    try:
        own = json.loads(draft.files.get("cases.json") or '{"cases": []}')
        cases = own["cases"]
        assert isinstance(cases, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return draft
    seen = {_request_key(c) for c in cases if isinstance(c, dict)}
    extra = [c for c in required if _request_key(c) not in seen]
    merged = json.dumps({**own, "cases": cases + extra}, indent=2)
    return draft.model_copy(update={"files": {**draft.files, "cases.json": merged}})


def _request_key(case: dict[str, Any]) -> tuple[Any, ...]:
    """What a case asks for (tool, resource or prompt, and arguments), so a repeat is added once."""
    return (case.get("tool"), case.get("resource"), case.get("prompt"),
            json.dumps(case.get("arguments", {}), sort_keys=True))


def _resolve(attempts: list[HealAttempt], turn: int, still_failing: set[str]) -> None:
    """Settle pending attempts: fixed when their class no longer shows up in this turn.

    A class can only show up once the turn got past the earlier stages: when this turn failed at an earlier
    stage (a syntax error hides every assertion), the class's absence proves nothing, and it is not fixed.
    """
    stage = {c: i for i, c in enumerate(CLASS_PRIORITY)}
    earliest = min((stage.get(c, len(stage)) for c in still_failing), default=len(stage))
    for a in attempts:
        if a.outcome == "pending" and a.turn < turn:
            hidden = earliest < stage.get(a.error_class, len(stage))
            a.outcome = "not_fixed" if a.error_class in still_failing or hidden else "fixed"


def _failures_text(failures: list[ClassifiedFailure], report: ValidationReport | None) -> str:
    lines = [f"- [{f.error_class}] {f.where}: {f.message}" for f in failures]
    if report is not None:
        for c in report.cases:
            if not c.passed:
                lines.append(f"- case {c.call()}: expected {json.dumps(c.expected)[:300]}"
                             f", got {json.dumps(c.actual, default=str)[:300]}")
    return "\n".join(lines)


def _context(failures: list[ClassifiedFailure], facts: Any) -> str:
    """PyPI facts for dependency problems: which packages exist and their latest versions."""
    if not any(f.error_class in ("dependency", "compatibility", "import") for f in failures) or not facts:
        return ""
    lines = ["PyPI facts:"]
    for name, info in sorted(facts.items()):
        if info is None:
            lines.append(f"- {name}: does NOT exist on PyPI; do not use it")
        else:
            d = info.model_dump() if hasattr(info, "model_dump") else dict(info)
            keep = {k: d[k] for k in ("latest_version", "version", "requires_python", "summary") if d.get(k)}
            lines.append(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in keep.items()))
    return "\n".join(lines)


def cleanup(work_dir: Path) -> None:
    """Remove a build's scratch directory."""
    shutil.rmtree(work_dir, ignore_errors=True)

