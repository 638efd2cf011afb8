"""Static security scan of untrusted Python source: AST rules, findings, and the policy that blocks a run.

The scan is a tripwire, not a proof of safety: it catches the patterns generated code
most often gets wrong (shelling out, eval, writing outside its work dir, reading the
user's credentials, hard-coded secrets) before anything runs. Isolation still does the
real work.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.errors import SandboxError

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}

RULES: dict[str, str] = {
    "syntax-error": "the file does not parse as Python",
    "eval-exec": "eval()/exec() run arbitrary strings as code",
    "os-system": "os.system() runs a shell command",
    "os-popen": "os.popen() runs a shell command",
    "subprocess-shell": "subprocess with shell=True runs a shell command",
    "subprocess": "starts a subprocess (without a shell)",
    "write-outside-workdir": "writes to an absolute path or climbs out with '..'",
    "rmtree-outside-workdir": "deletes a tree at an absolute path or outside the work dir",
    "home-dotfile": "reads a file in the user's home dot-directories (credentials live there)",
    "secret-literal": "a credential is written into the source",
    "dynamic-import": "imports a module whose name is computed at run time",
    "unsafe-deserialize": "pickle/marshal load can run code hidden in the data",
}
"""Every rule the scanner knows, with the one-line reason it exists."""

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}"), "an API key in the 'sk-...' format"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "a cloud access key id ('AKIA...')"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a source-hosting personal access token ('ghp_...')"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), "a fine-grained personal access token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a chat-service bot token ('xox...')"),
    (re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"), "a PEM private key"),
]
_SECRET_NAME = re.compile(r"(key|token|secret|passw(or)?d|credential|auth)", re.IGNORECASE)
# The NAME of an environment variable (OPENWEATHER_API_KEY): how the code prompt asks servers to find their
# secrets, so not a secret itself. Upper case with underscores, or upper-case letters only; a random upper-case
# key (base32 with digits) has neither shape.
_ENV_VAR_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z]+$")
_ENV_READERS = ("getenv", "environ.get", "environ.pop", "environ.setdefault", "getenvb")
_DOTFILE = re.compile(r"(^|[/\\])\.(ssh|aws|gnupg|netrc|docker|kube|config/gcloud|git-credentials|pgpass)\b")
_WRITE_MODE = re.compile(r"[wax+]")


class Finding(BaseModel):
    """One thing the scan saw: where, which rule, how bad, and why it matters."""

    model_config = ConfigDict(frozen=True)

    file: str
    """Path of the scanned file, as given (relative paths stay relative)."""
    line: int
    """1-based line of the offending node."""
    rule: str
    """A key of RULES."""
    severity: Severity
    """How bad: low | medium | high | critical."""
    message: str
    """What was seen and how to fix it."""

    def where(self) -> str:
        """`file:line` for messages."""
        return f"{self.file}:{self.line}"


class ScanPolicy(BaseModel):
    """Which findings stop a run: everything at or above `block_at`, except rules listed in `allow_rules`."""

    model_config = ConfigDict(frozen=True)

    block_at: Severity = "high"
    """Lowest severity that blocks execution."""
    allow_rules: tuple[str, ...] = Field(default=())
    """Rules that never block (still reported), e.g. ("subprocess-shell",) for a server that must shell out."""

    @field_validator("allow_rules")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in value if r not in RULES]
        if unknown:
            raise ValueError(f"allow_rules: unknown rule(s) {unknown}; known rules are {sorted(RULES)}")
        return value

    def blocking(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings that block execution under this policy."""
        floor = SEVERITY_ORDER[self.block_at]
        return [f for f in findings if SEVERITY_ORDER[f.severity] >= floor and f.rule not in self.allow_rules]


def python_files(paths: Iterable[Path | str]) -> list[Path]:
    """Every .py file named in `paths` or below a directory in it, sorted, skipping caches, venvs and links."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):  # never descends into a linked directory
                dirnames[:] = [d for d in dirnames if d not in {"__pycache__", ".venv", "venv", "site-packages", ".git"}]
                out += [Path(dirpath, name) for name in filenames
                        if name.endswith(".py") and not os.path.islink(os.path.join(dirpath, name))]
        elif path.is_file():
            out.append(path)
        else:
            raise SandboxError(f"scan: path {str(path)!r} does not exist; give .py files or directories")
    return sorted(out)


def syntax_error(source: str, filename: str) -> Finding | None:
    """A critical 'syntax-error' finding (file:line and the parser's message) when `source` does not parse."""
    try:
        ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return Finding(file=filename, line=exc.lineno or 1, rule="syntax-error", severity="critical",
                       message=f"{exc.msg} (line {exc.lineno}, column {exc.offset}): {(exc.text or '').strip()}")
    return None


def syntax_errors(paths: Iterable[Path | str]) -> list[Finding]:
    """A syntax-error finding (see `syntax_error`) for each file under `paths` that does not parse."""
    found = (syntax_error(path.read_text(encoding="utf-8", errors="replace"), str(path)) for path in python_files(paths))
    return [finding for finding in found if finding is not None]


def scan_paths(paths: Iterable[Path | str]) -> list[Finding]:
    """Scan every .py file under `paths`; files that do not parse yield a 'syntax-error' finding instead."""
    out: list[Finding] = []
    for path in python_files(paths):
        out.extend(scan_source(path.read_text(encoding="utf-8", errors="replace"), str(path)))
    return out


def scan_source(source: str, filename: str = "<string>") -> list[Finding]:
    """Scan one module's source text."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return [Finding(file=filename, line=exc.lineno or 1, rule="syntax-error", severity="critical",
                        message=f"{exc.msg}: {(exc.text or '').strip()}")]
    visitor = _Visitor(filename)
    visitor.visit(tree)
    visitor.drop_env_var_names()
    # One finding per rule and line: expanduser("~/.ssh") trips both the call and the literal check.
    unique = {(f.line, f.rule): f for f in reversed(visitor.findings)}
    return sorted(unique.values(), key=lambda f: (f.line, f.rule))


def entropy(text: str) -> float:
    """Shannon entropy in bits per character (random base64 is ~6, English prose ~4)."""
    if not text:
        return 0.0
    counts = {c: text.count(c) for c in set(text)}
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_generated_secret(value: str) -> bool:
    # Long, no spaces, high entropy: a key rather than a label, a URL or a sentence.
    return (len(value) >= 16 and " " not in value and "/" not in value and entropy(value) >= 3.5
            and not _ENV_VAR_NAME.match(value))


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)  # an f-string's literal head is enough to see "/etc/..."
    return None


def _escapes_workdir(path: str) -> bool:
    return path.startswith(("/", "~")) or ".." in Path(path).parts or bool(re.match(r"^[A-Za-z]:[\\/]", path))


class _Visitor(ast.NodeVisitor):
    """Resolves imported names to dotted paths so `from os import system as s; s()` is still os.system."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.findings: list[Finding] = []
        self.aliases: dict[str, str] = {}
        self.env_name_vars: set[str] = set()
        """Variables whose value is handed to os.getenv / os.environ: they hold a variable's name, not a secret."""
        self.named_secrets: dict[int, str] = {}
        """id() of a secret-literal finding -> the variable it was assigned to (checked against env_name_vars)."""

    def add(self, node: ast.AST, rule: str, severity: Severity, message: str) -> None:
        self.findings.append(Finding(file=self.filename, line=getattr(node, "lineno", 1), rule=rule,
                                     severity=severity, message=message))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name] = f"{node.module or ''}.{a.name}"
        self.generic_visit(node)

    def dotted(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):  # Path.home() / Path(...) chains: name the call's target
            inner = self.dotted(node.func)
            return f"{inner}()" if inner else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func) or ""
        if name.endswith(_ENV_READERS) and node.args and isinstance(node.args[0], ast.Name):
            self.env_name_vars.add(node.args[0].id)
        self._check_call(node, name)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if (self.dotted(node.value) or "").endswith("environ") and isinstance(node.slice, ast.Name):
            self.env_name_vars.add(node.slice.id)
        self.generic_visit(node)

    def drop_env_var_names(self) -> None:
        """Forget secret-literal findings on variables that turned out to name an environment variable."""
        self.findings = [f for f in self.findings if self.named_secrets.get(id(f)) not in self.env_name_vars]

    def _check_call(self, node: ast.Call, name: str) -> None:
        first = _const_str(node.args[0]) if node.args else None
        if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            self.add(node, "eval-exec", "high", f"{name}() runs a string as code; parse the input instead "
                     "(json.loads, ast.literal_eval, an explicit operator table)")
        elif name == "os.system":
            self.add(node, "os-system", "high", "os.system() runs a shell command; call the library directly "
                     "or use subprocess.run([...]) with an argument list")
        elif name == "os.popen":
            self.add(node, "os-popen", "high", "os.popen() runs a shell command; use subprocess.run([...])")
        elif name.startswith("subprocess."):
            shell = next((k.value for k in node.keywords if k.arg == "shell"), None)
            if shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
                self.add(node, "subprocess-shell", "high", f"{name}(..., shell=True) hands a string to the "
                         "shell; pass an argument list and drop shell=True")
            elif name.split(".")[-1] in ("run", "call", "check_call", "check_output", "Popen"):
                self.add(node, "subprocess", "low", f"{name}() starts a program; make sure it is needed")
        elif name in ("open", "io.open", "builtins.open") and first is not None:
            mode = _const_str(node.args[1]) if len(node.args) > 1 else _const_str(
                next((k.value for k in node.keywords if k.arg == "mode"), None))
            if mode and _WRITE_MODE.search(mode) and _escapes_workdir(first):
                self.add(node, "write-outside-workdir", "high", f"open({first!r}, {mode!r}) writes outside the "
                         "work dir; write relative to the current directory or a tempfile")
        elif name.split(".")[-1] in ("write_text", "write_bytes", "touch", "mkdir", "unlink"):
            target = self._path_literal(node.func)
            if target is not None and _escapes_workdir(target):
                self.add(node, "write-outside-workdir", "high", f"{name.split('.')[-1]}() on {target!r} "
                         "changes files outside the work dir")
        elif name in ("shutil.rmtree", "os.removedirs") and first is not None and _escapes_workdir(first):
            self.add(node, "rmtree-outside-workdir", "critical", f"{name}({first!r}) deletes outside the work dir")
        elif name in ("os.path.expanduser", "pathlib.Path.expanduser") or name.endswith(".expanduser"):
            target = first if first is not None else self._path_literal(node.func)
            if target is not None and (target.startswith("~/.") or _DOTFILE.search(target)):
                self.add(node, "home-dotfile", "high", f"expanduser({target!r}) reaches the user's dotfiles, "
                         "where credentials live; take what you need as a tool argument")
        elif name in ("importlib.import_module", "__import__") and node.args and first is None:
            self.add(node, "dynamic-import", "medium", f"{name}() with a computed module name can load any code")
        elif name in ("pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "dill.loads"):
            self.add(node, "unsafe-deserialize", "medium", f"{name}() can execute code embedded in the data; "
                     "use json")

    def _path_literal(self, func: ast.AST) -> str | None:
        # Path("/etc/x").write_text(...) -> "/etc/x"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and func.value.args:
            return _const_str(func.value.args[0])
        return None

    def visit_BinOp(self, node: ast.BinOp) -> None:
        # Path.home() / ".ssh"  or  Path("~") / ".aws"
        if isinstance(node.op, ast.Div):
            left = self.dotted(node.left) or ""
            right = _const_str(node.right)
            if right is not None and (left.endswith("home()") or left.endswith("expanduser()")) and (
                right.startswith(".") or _DOTFILE.search("/" + right)
            ):
                self.add(node, "home-dotfile", "high", f"{left} / {right!r} reaches the user's dotfiles")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            value = node.value
            if value.startswith("~/") and _DOTFILE.search(value[1:]):
                self.add(node, "home-dotfile", "high", f"{value!r} names a credentials file in the home directory")
            for pattern, label in _SECRET_PATTERNS:
                if pattern.search(value):
                    self.add(node, "secret-literal", "critical", f"string literal looks like {label}; read "
                             "secrets from the environment or a tool argument, never the source")
                    break

    def _check_named_value(self, name: str, value: ast.AST | None) -> None:
        literal = _const_str(value)
        if literal is None or not _SECRET_NAME.search(name) or not _looks_generated_secret(literal):
            return
        if any(p.search(literal) for p, _ in _SECRET_PATTERNS):
            return  # already reported by visit_Constant
        self.add(value, "secret-literal", "high", f"{name} is assigned a long random-looking literal "
                 f"(entropy {entropy(literal):.1f} bits/char); read it from the environment instead")
        self.named_secrets[id(self.findings[-1])] = name

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name | ast.Attribute):
                self._check_named_value(target.id if isinstance(target, ast.Name) else target.attr, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._check_named_value(node.target.id, node.value)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg:
            self._check_named_value(node.arg, node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            name = _const_str(key)
            if name:
                self._check_named_value(name, value)
        self.generic_visit(node)

