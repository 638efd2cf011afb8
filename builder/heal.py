"""Healing: sort a failed turn's problems into classes and pick a strategy per class by its past success rate.

Strategy order is learned: each strategy's record against an error class comes from the
knowledge repository's failure-analysis table (`strategy_stats`), scored with Laplace
smoothing, (successes + 1) / (attempts + 2), so an untried strategy starts at 0.5 and a
strategy that keeps failing sinks below one that has never been tried. Within one build a
strategy already applied to the same class is tried again only after every other one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel

from knowledge.models import StrategyStat

FailureClass = Literal["dependency", "syntax", "import", "runtime", "timeout", "protocol", "assertion", "security",
                       "compatibility"]

# Earlier stages first: a draft that does not parse cannot show its assertion failures yet.
CLASS_PRIORITY: tuple[str, ...] = ("security", "syntax", "dependency", "import", "compatibility", "protocol",
                                   "runtime", "timeout", "assertion")


class ClassifiedFailure(BaseModel):
    """One problem of a turn, sorted into a class."""

    error_class: str
    """One of CLASS_PRIORITY."""
    message: str
    """What went wrong, as shown to the LLM (kept short)."""
    source: Literal["reason", "validation"]
    """Found by static reasoning (nothing ran) or by the sandbox validator."""
    where: str = ""
    """The check, file:line or package concerned."""


class Strategy(BaseModel):
    """A way to fix one class of failure, as an instruction to the code writer."""

    name: str
    """Stable name, stored in the failure-analysis table."""
    error_class: str
    """The class it addresses."""
    instruction: str
    """What the LLM is told to do."""


class HealPlan(BaseModel):
    """The strategy chosen for a failed turn and why."""

    error_class: str
    """The class being addressed (the earliest-stage class of the turn)."""
    strategy: str
    """The chosen strategy's name."""
    instruction: str
    """The instruction sent with the feedback, including any context (e.g. PyPI versions)."""
    score: float
    """The smoothed past success rate that ranked it."""
    alternatives: list[str]
    """The other strategies in ranked order."""


def _s(cls: str, name: str, text: str) -> Strategy:
    return Strategy(name=name, error_class=cls, instruction=text)


STRATEGIES: dict[str, list[Strategy]] = {
    "dependency": [
        _s("dependency", "repin", "Pin every dependency to a version that exists; use the PyPI facts below."),
        _s("dependency", "swap-package", "Replace the failing package with a well-known existing PyPI package "
           "(or the standard library) that provides the same functionality; see the PyPI facts below."),
    ],
    "import": [
        _s("import", "add-missing-dependency", "A module imported by server.py is not installed: add its PyPI "
           "distribution (pinned) to requirements.txt, or import from the standard library instead."),
        _s("import", "fix-import-path", "Fix the import statement: the module or name does not exist at that path "
           "in the pinned version; check the traceback."),
    ],
    "syntax": [_s("syntax", "targeted-fix", "Fix the syntax error at the reported file and line; change nothing else.")],
    "runtime": [
        _s("runtime", "targeted-fix", "Fix the exception shown in the traceback at its cause; keep the rest."),
        _s("runtime", "defensive-rewrite", "Rewrite the failing tool defensively: validate inputs first and raise "
           "ToolError with guidance for bad input instead of letting exceptions escape."),
    ],
    "assertion": [
        _s("assertion", "targeted-fix", "A tool returned a wrong value: compare expected and actual below and fix the "
           "logic of that tool (not the test case, unless the case contradicts the requirement)."),
        _s("assertion", "rewrite-tool", "Rewrite the failing tool from scratch to the requirement's description and "
           "examples."),
    ],
    "protocol": [
        _s("protocol", "use-mcpserver-api", "Follow the MCP server rules exactly: MCPServer from "
           "mcp.server.mcpserver, @mcp.tool(...) with type hints, mcp.run() under __main__, nothing on stdout, tool "
           "names of letters, digits, '_' or '-'."),
    ],
    "timeout": [
        _s("timeout", "make-faster", "The server or a tool took too long: remove slow work from import time, avoid "
           "network calls and unbounded loops, cap input sizes."),
        _s("timeout", "reduce-work", "Do less per call: lazy-import heavy modules inside tools and return early."),
    ],
    "compatibility": [
        _s("compatibility", "python-compat", "Use only Python 3.11-compatible syntax and packages whose releases "
           "support Python 3.11 (check requires_python below)."),
        _s("compatibility", "platform-compat", "Use pure-Python packages that install on Linux x86_64 without "
           "compilers or system libraries."),
    ],
    "security": [
        _s("security", "remove-unsafe-code", "Remove the flagged unsafe code (eval/exec, shell, writes outside the "
           "working directory, secrets); implement it safely (e.g. ast-based parsing)."),
    ],
}

_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_COMPAT = re.compile(r"requires[-_ ]python|python_requires|not supported on this platform|"
                     r"no matching distribution|is not a supported wheel|incompatible", re.IGNORECASE)


def refine_class(error_class: str | None, message: str, requirements: Iterable[str] = ()) -> str:
    """Sharpen a validator class from the message: a missing module, an interpreter or platform mismatch."""
    cls = error_class or "runtime"
    if _COMPAT.search(message) and cls in ("dependency", "import", "runtime"):
        return "compatibility"
    if cls == "import" and _NO_MODULE.search(message):
        return "import"
    return cls if cls in STRATEGIES else "runtime"


def primary_class(failures: list[ClassifiedFailure]) -> str:
    """The earliest-stage class among a turn's failures."""
    present = {f.error_class for f in failures}
    return next((c for c in CLASS_PRIORITY if c in present), failures[0].error_class)


def rank(error_class: str, stats: list[StrategyStat], tried: Iterable[str] = ()) -> list[tuple[Strategy, float]]:
    """Strategies for a class, best first: untried-in-this-build before tried, then by smoothed past rate."""
    by_name = {s.strategy: s for s in stats}
    tried_list = list(tried)
    scored = []
    for order, strat in enumerate(STRATEGIES.get(error_class, STRATEGIES["runtime"])):
        st = by_name.get(strat.name)
        score = (st.successes + 1) / (st.attempts + 2) if st else 0.5
        scored.append((tried_list.count(strat.name), -score, order, strat, score))
    scored.sort(key=lambda t: t[:3])
    return [(t[3], t[4]) for t in scored]


def plan(failures: list[ClassifiedFailure], stats_for: Callable[[str], list[StrategyStat]],
         tried: dict[str, list[str]], context: str = "") -> HealPlan:
    """Choose the strategy for a failed turn; `tried` maps a class to strategies already applied in this build."""
    cls = primary_class(failures)
    ranked = rank(cls, stats_for(cls), tried.get(cls, []))
    best, score = ranked[0]
    instruction = best.instruction + (f"\n{context}" if context else "")
    return HealPlan(error_class=cls, strategy=best.name, instruction=instruction, score=round(score, 3),
                    alternatives=[s.name for s, _ in ranked[1:]])


def from_report(report: Any, requirements: Iterable[str] = ()) -> list[ClassifiedFailure]:
    """Classified failures of a sandbox ValidationReport (failed checks and failed cases)."""
    reqs = list(requirements)
    out: list[ClassifiedFailure] = []
    for check in report.failures():
        message = (check.reason or "")[:1500]
        if check.failure_class in ("import", "dependency", "runtime") and getattr(report, "stderr_tail", ""):
            message = f"{message}\nstderr:\n{report.stderr_tail[-1200:]}"
        out.append(ClassifiedFailure(error_class=refine_class(check.failure_class, message, reqs), message=message,
                                     source="validation", where=check.name))
    if not out and getattr(report, "verdict", "pass") != "pass":
        out.append(ClassifiedFailure(error_class="runtime", message="validation failed without a failed check",
                                     source="validation"))
    return out
