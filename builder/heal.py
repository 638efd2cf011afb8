"""Healing: sort a failed turn's problems into classes and pick a strategy per class by its past success rate.

A strategy must first fit the failure. Within its class each failure gets a finer kind
(`sharpen`: an undefined name, a package no file imports, a version that does not exist...),
and a strategy made for other kinds is never chosen for it: a missing import is not healed by
rewriting a tool defensively, nor an unused misspelt package by pinning it anew. Strategies
made for the failure's kind come before the general ones of its class.

Among those that fit, the order is learned: each strategy's record against an error class
comes from the knowledge repository's failure-analysis table (`strategy_stats`), scored with
Laplace smoothing, (successes + 1) / (attempts + 2), so an untried strategy starts at 0.5 and
a strategy that keeps failing sinks below one that has never been tried. Within one build a
strategy already applied to the same class is tried again only after every other one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
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
    kind: str = ""
    """A finer label within the class (see KINDS), set by `sharpen`; "" when nothing finer is known."""


class Strategy(BaseModel):
    """A way to fix one class of failure, as an instruction to the code writer."""

    name: str
    """Stable name, stored in the failure-analysis table."""
    error_class: str
    """The class it addresses."""
    instruction: str
    """What the LLM is told to do; "{where}" is replaced by the failure's package, check or file:line."""
    fits: tuple[str, ...] = ()
    """The kinds of failure it is made for; empty: any failure of its class."""


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
    """The other strategies that fit, in ranked order."""
    kind: str = ""
    """The kind of failure it was chosen to fit ("" when no finer kind was known)."""


def _s(cls: str, name: str, text: str, fits: tuple[str, ...] = ()) -> Strategy:
    return Strategy(name=name, error_class=cls, instruction=text, fits=fits)


KINDS: dict[str, str] = {
    "undefined-name": "a name is used but never imported or defined (NameError, or ruff's undefined name)",
    "tool-exception": "an exception escaped from a tool while it handled a case's input",
    "unused-package": "requirements.txt lists a package, flagged by vetting, that no file imports",
    "misspelt-package": "requirements.txt misspells a package the code imports",
    "unknown-package": "the code imports a package that does not exist on PyPI",
    "bad-version": "a pin that does not exist, does not install, or is not a plain name==version from PyPI",
    "module-not-installed": "an imported module is installed by no listed package",
    "wrong-import-path": "a module or name is imported from a place it is not",
}
"""The finer kinds `sharpen` gives failures, and what each means."""


STRATEGIES: dict[str, list[Strategy]] = {
    "dependency": [
        _s("dependency", "repin", "Pin every dependency to a version that exists; use the PyPI facts below.",
           ("bad-version",)),
        _s("dependency", "swap-package", "Replace the failing package with a well-known existing PyPI package "
           "(or the standard library) that provides the same functionality; see the PyPI facts below.",
           ("unknown-package",)),
        _s("dependency", "remove-unused-dependency", "requirements.txt lists {where}, which no file imports: remove "
           "that line. List a package only for a module you import.", ("unused-package",)),
        _s("dependency", "fix-package-name", "requirements.txt misspells {where}: write the name of the package "
           "the code imports (the failure says which), pinned to an existing version.", ("misspelt-package",)),
        _s("dependency", "add-missing-dependency", "A module imported by the code is installed by no listed "
           "package: add its PyPI distribution (pinned) to requirements.txt, or use the standard library instead.",
           ("module-not-installed",)),
    ],
    "import": [
        _s("import", "add-missing-dependency", "A module imported by server.py is not installed: add its PyPI "
           "distribution (pinned) to requirements.txt, or import from the standard library instead.",
           ("module-not-installed",)),
        _s("import", "fix-import-path", "Fix the import statement: the module or name does not exist at that path "
           "in the pinned version; check the traceback.", ("wrong-import-path",)),
    ],
    "syntax": [_s("syntax", "targeted-fix", "Fix the syntax error at the reported file and line; change nothing else.")],
    "runtime": [
        _s("runtime", "targeted-fix", "Fix the exception shown in the traceback at its cause; keep the rest."),
        _s("runtime", "add-missing-import", "A name is used but never imported or defined ({where}): add the "
           "missing import (the standard library first) or define the name; change nothing else.",
           ("undefined-name",)),
        _s("runtime", "defensive-rewrite", "Rewrite the failing tool defensively: validate inputs first and raise "
           "ToolError with guidance for bad input instead of letting exceptions escape.", ("tool-exception",)),
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


def rank(error_class: str, stats: list[StrategyStat], tried: Iterable[str] = (),
         kind: str = "") -> list[tuple[Strategy, float]]:
    """Strategies that fit a failure of `kind`, best first: untried-in-this-build before tried, then made for
    the kind before general, then by smoothed past rate. With no kind known, every strategy of the class fits."""
    by_name = {s.strategy: s for s in stats}
    tried_list = list(tried)
    candidates = STRATEGIES.get(error_class, STRATEGIES["runtime"])
    fitting = [s for s in candidates if not s.fits or kind in s.fits]
    if not kind or not fitting:
        fitting = candidates
    scored = []
    for order, strat in enumerate(fitting):
        st = by_name.get(strat.name)
        score = (st.successes + 1) / (st.attempts + 2) if st else 0.5
        specific = bool(kind) and kind in strat.fits
        scored.append((tried_list.count(strat.name), not specific, -score, order, strat, score))
    scored.sort(key=lambda t: t[:4])
    return [(t[4], t[5]) for t in scored]


def plan(failures: list[ClassifiedFailure], stats_for: Callable[[str], list[StrategyStat]],
         tried: dict[str, list[str]], context: str = "") -> HealPlan:
    """Choose the strategy for a failed turn; `tried` maps a class to strategies already applied in this build."""
    cls = primary_class(failures)
    primary = next((f for f in failures if f.error_class == cls), failures[0])
    ranked = rank(cls, stats_for(cls), tried.get(cls, []), primary.kind)
    best, score = ranked[0]
    instruction = best.instruction.replace("{where}", primary.where or "the failing part")
    instruction += f"\n{context}" if context else ""
    return HealPlan(error_class=cls, strategy=best.name, instruction=instruction, score=round(score, 3),
                    alternatives=[s.name for s, _ in ranked[1:]], kind=primary.kind)


_UNDEFINED = re.compile(r"Undefined name `(\w+)`|NameError: name '(\w+)' is not defined")
_TOOL_CRASH = re.compile(r"(tool returned an error result|reading the resource failed|getting the prompt failed): "
                         r".*\(server stderr: [\w.]*(Error|Exception)\b")
_VETTED = re.compile(r"^\[(missing|typosquat|slopsquat)\]")
_BAD_PIN = re.compile(r"^\[(invalid-requirement|direct-url|unpinned)\]")
_DID_YOU_MEAN = re.compile(r"did you mean ([\w.-]+)\?|; use ([\w.-]+)$")
_BAD_VERSION = re.compile(r"no solution found|no version of|not found in the package registry|"
                          r"there is no version|could not find a version|because .*==.* was not found", re.IGNORECASE)
# Distributions whose module has another name; the rest are matched on their own name.
_MODULE_OF = {"pyyaml": "yaml", "beautifulsoup4": "bs4", "pillow": "PIL", "python-dateutil": "dateutil",
              "opencv-python": "cv2", "opencv-python-headless": "cv2", "scikit-learn": "sklearn",
              "python-docx": "docx", "pymupdf": "fitz", "pypdf2": "PyPDF2", "protobuf": "google",
              "python-pptx": "pptx", "pdfminer-six": "pdfminer", "attrs": "attr", "python-dotenv": "dotenv",
              "pyjwt": "jwt", "pyserial": "serial", "python-multipart": "multipart", "markdown-it-py": "markdown_it",
              "msgpack-python": "msgpack", "pycryptodome": "Crypto", "faiss-cpu": "faiss"}


def imported_modules(files: Mapping[str, str]) -> set[str]:
    """Top-level module names the draft's Python files import (lower case)."""
    found: set[str] = set()
    for rel, source in files.items():
        if not rel.endswith(".py"):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0].lower() for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0].lower())
    return found


def _imported(package: str, modules: set[str]) -> bool:
    name = re.sub(r"[-_.]+", "-", package).lower()
    guesses = {name, name.replace("-", "_"), _MODULE_OF.get(name, "").lower(),
               name.removeprefix("python-").replace("-", "_"), name.removeprefix("py").replace("-", "_"),
               name.removesuffix("-python").replace("-", "_")}
    return bool(guesses & modules)


def kind_of(failure: ClassifiedFailure, modules: set[str], meant: str | None = None) -> str:
    """The finer kind of one failure (see KINDS), given the modules the draft imports and, for a flagged
    package, the package vetting says was meant; "" if no kind applies."""
    text = failure.message
    if failure.error_class == "runtime":
        if _UNDEFINED.search(text):
            return "undefined-name"
        return "tool-exception" if _TOOL_CRASH.search(text) else ""
    if failure.error_class in ("dependency", "import"):
        missing = re.search(r"No module named '([\w.]+)'", text)
        if missing:
            return "wrong-import-path" if "." in missing.group(1) else "module-not-installed"
        if "cannot import name" in text:
            return "wrong-import-path"
        if _VETTED.search(text):
            if _imported(failure.where, modules):
                return "unknown-package"
            return "misspelt-package" if meant and _imported(meant, modules) else "unused-package"
        if _BAD_VERSION.search(text) or _BAD_PIN.search(text):
            return "bad-version"
    return ""


def sharpen(failures: list[ClassifiedFailure], files: Mapping[str, str]) -> list[ClassifiedFailure]:
    """The failures with their finer kind set, judged against the draft's files (which modules it imports)."""
    modules = imported_modules(files)
    # Vetting reports one package in several findings ([missing], then [typosquat] naming the real one).
    meant = {f.where: m.group(1) or m.group(2) for f in failures if (m := _DID_YOU_MEAN.search(f.message))}
    return [f.model_copy(update={"kind": kind_of(f, modules, meant.get(f.where))}) for f in failures]


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
