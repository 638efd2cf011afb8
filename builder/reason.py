"""Reason: check a draft without running it (parse, lint, security scan, dependency vetting).

Blocking findings go straight back to the code writer; nothing is executed for a draft
that has any. Lint is this module's own AST checks for the rules generated servers must
follow, plus undefined-name detection by ruff from the builder's own environment (the
generated server's environment need not contain it).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from builder.draft import ServerDraft
from builder.errors import BuildError
from builder.requirement import Requirement
from knowledge.text import normalize_package

Stage = Literal["parse", "lint", "scan", "vet"]


class Finding(BaseModel):
    """One problem the Reason step found in a draft."""

    stage: Stage
    blocking: bool
    """Blocking findings stop the turn before anything runs."""
    error_class: str
    """The failure class the healer sorts it into."""
    message: str
    where: str = ""
    """file:line, or the package concerned."""


class ReasonResult(BaseModel):
    """Every finding of one draft and how long each stage took."""

    findings: list[Finding] = Field(default_factory=list)
    seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def blocking(self) -> list[Finding]:
        """The findings that stop the turn."""
        return [f for f in self.findings if f.blocking]


PyPILookup = Callable[[str], Awaitable[Any]]
"""name -> research.PackageInfo | None (None: not on PyPI)."""


def parse(draft: ServerDraft) -> list[Finding]:
    """A blocking syntax finding per Python file that does not parse."""
    out = []
    for rel, src in sorted(draft.files.items()):
        if rel.endswith(".py"):
            try:
                ast.parse(src, filename=rel)
            except SyntaxError as e:
                out.append(Finding(stage="parse", blocking=True, error_class="syntax", where=f"{rel}:{e.lineno}",
                                   message=f"{e.msg} at line {e.lineno}: {(e.text or '').strip()}"))
    return out


def defined_tools(tree: ast.Module) -> list[str]:
    """Names of the tools registered with an `@<server>.tool(...)` decorator (name= wins over the function name)."""
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            func = call.func if call else dec
            if isinstance(func, ast.Attribute) and func.attr == "tool":
                explicit = [k.value.value for k in (call.keywords if call else [])
                            if k.arg == "name" and isinstance(k.value, ast.Constant)]
                names.append(str(explicit[0]) if explicit else node.name)
    return names


def _registered(tree: ast.Module, kind: str) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, ast.Call]]:
    """Functions decorated with `@<server>.<kind>(...)` and that decorator call."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out += [(node, d) for d in node.decorator_list if isinstance(d, ast.Call)
                    and isinstance(d.func, ast.Attribute) and d.func.attr == kind]
    return out


def _literal(call: ast.Call, keyword: str, position: int | None) -> str | None:
    values = [k.value for k in call.keywords if k.arg == keyword]
    if not values and position is not None and len(call.args) > position:
        values = [call.args[position]]
    return values[0].value if values and isinstance(values[0], ast.Constant) and isinstance(values[0].value, str) \
        else None


def defined_resources(tree: ast.Module) -> list[str]:
    """URIs (and URI templates) registered with `@<server>.resource("uri", ...)`."""
    return [uri for _, call in _registered(tree, "resource") if (uri := _literal(call, "uri", 0)) is not None]


def defined_prompts(tree: ast.Module) -> list[str]:
    """Names of the prompts registered with `@<server>.prompt(...)` (name= wins over the function name)."""
    return [_literal(call, "name", 0) or node.name for node, call in _registered(tree, "prompt")]


def server_names(tree: ast.Module) -> list[str]:
    """The literal names passed to MCPServer(...)."""
    return [name for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "MCPServer"
            and (name := _literal(node, "name", 0)) is not None]


def _served(uri: str, defined: list[str]) -> bool:
    from mcp.shared.uri_template import UriTemplate

    for d in defined:
        try:
            if d == uri or ("{" in d and UriTemplate.parse(d).match(uri) is not None):
                return True
        except Exception:  # noqa: BLE001 - an invalid template serves nothing; the server's start says why
            continue
    return False


def _lint_requested(tree: ast.Module, req: Requirement) -> list[Finding]:
    """The requirement's server name, resources and prompts, as server.py defines them."""
    out = []
    names = server_names(tree)
    if names and req.server_name not in names:
        out.append(Finding(stage="lint", blocking=True, error_class="protocol", where="server.py",
                           message=f"the server is created as MCPServer({names[0]!r}) but the requirement's "
                           f"server_name is {req.server_name!r}; create it as MCPServer({req.server_name!r})"))
    resources, prompts = defined_resources(tree), defined_prompts(tree)
    missing = [r.uri for r in req.resources if r.uri not in resources]
    if missing:
        out.append(Finding(stage="lint", blocking=True, error_class="assertion", where="server.py",
                           message=f"requested resources not defined: {', '.join(missing)} (defined with "
                           f"@mcp.resource: {', '.join(resources) or 'none'})"))
    missing = [p.name for p in req.prompts if p.name not in prompts]
    if missing:
        out.append(Finding(stage="lint", blocking=True, error_class="assertion", where="server.py",
                           message=f"requested prompts not defined: {', '.join(missing)} (defined with "
                           f"@mcp.prompt: {', '.join(prompts) or 'none'})"))
    return out


def _lint_server(tree: ast.Module, req: Requirement | None) -> list[Finding]:
    out: list[Finding] = []

    def block(cls: str, msg: str, node: ast.AST | None = None) -> None:
        out.append(Finding(stage="lint", blocking=True, error_class=cls, message=msg,
                           where=f"server.py:{getattr(node, 'lineno', 1)}"))

    uses_server = False
    runs = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if "fastmcp" in node.module:
                block("protocol", f"imports {node.module}; use `from mcp.server.mcpserver import MCPServer` "
                      "(mcp 2.x)", node)
            if node.module == "mcp.server.mcpserver" and any(a.name == "MCPServer" for a in node.names):
                uses_server = True
        elif isinstance(node, ast.Call):
            func = node.func
            to = next((ast.unparse(k.value) for k in node.keywords if k.arg == "file"), "sys.stdout")
            if isinstance(func, ast.Name) and func.id == "print" and to in ("sys.stdout", "None"):
                block("protocol", "print() writes to stdout, which carries the MCP protocol; remove it or use "
                      "print(..., file=sys.stderr)", node)
            if isinstance(func, ast.Attribute) and func.attr == "write" and ast.unparse(func.value) == "sys.stdout":
                block("protocol", "sys.stdout.write corrupts the MCP protocol stream; write to sys.stderr", node)
            if isinstance(func, ast.Attribute) and func.attr == "run":
                runs = True
    if not uses_server:
        block("protocol", "server.py must create its server with `from mcp.server.mcpserver import MCPServer`")
    if not runs:
        block("protocol", "server.py never calls <server>.run(); end it with `if __name__ == \"__main__\": mcp.run()`")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "tool"
                        and not any(k.arg == "annotations" for k in dec.keywords)):
                    block("protocol", f"tool {node.name} has no annotations; pass annotations=ToolAnnotations("
                          "read_only_hint=..., destructive_hint=..., idempotent_hint=..., open_world_hint=...) so "
                          "clients know whether calling it is safe", dec)
    tools = defined_tools(tree)
    if req is not None:
        missing = [t for t in req.tool_names() if t not in tools]
        if missing:
            block("assertion", f"requested tools not defined: {', '.join(missing)} (defined: {', '.join(tools) or 'none'})")
        out += _lint_requested(tree, req)
    return out


def _lint_requirements(draft: ServerDraft) -> list[Finding]:
    out = []
    reqs = draft.requirements()
    if "mcp" not in {normalize_package(r) for r in reqs}:
        out.append(Finding(stage="lint", blocking=True, error_class="dependency", where="requirements.txt",
                           message="requirements.txt must list mcp==2.3.0"))
    for r in reqs:
        if "==" not in r:
            out.append(Finding(stage="lint", blocking=False, error_class="dependency", where="requirements.txt",
                               message=f"{r!r} is not pinned; pin it as name==version"))
    return out


def _lint_cases(draft: ServerDraft, tree: ast.Module) -> list[Finding]:
    from sandbox.cases import CasesError, parse_cases
    from sandbox.fixtures import FIXTURES_SCRIPT

    try:
        cases = parse_cases(json.loads(draft.files["cases.json"]), source="cases.json")
    except (json.JSONDecodeError, CasesError) as e:
        return [Finding(stage="lint", blocking=True, error_class="syntax", where="cases.json", message=str(e))]
    out = []

    def block(message: str) -> None:
        out.append(Finding(stage="lint", blocking=True, error_class="assertion", where="cases.json", message=message))

    if not cases:
        block("cases.json has no cases; give at least one per tool")
    tools, resources, prompts = defined_tools(tree), defined_resources(tree), defined_prompts(tree)
    unknown = sorted({c.target for c in cases if c.kind == "tool"} - set(tools))
    if unknown:
        block(f"cases call undefined tools {unknown}; defined tools: {tools}")
    unknown = sorted({c.target for c in cases if c.kind == "resource" and not _served(c.target, resources)})
    if unknown:
        block(f"cases read resources {unknown} that no resource serves; defined resources: {resources}")
    unknown = sorted({c.target for c in cases if c.kind == "prompt"} - set(prompts))
    if unknown:
        block(f"cases get undefined prompts {unknown}; defined prompts: {prompts}")
    wanted = sorted({name for c in cases for name in c.fixtures()})
    if wanted and FIXTURES_SCRIPT not in draft.files:
        block(f"cases refer to fixtures {wanted}, but there is no {FIXTURES_SCRIPT} to write them into fixtures/")
    return out


def _ruff_undefined(directory: Path) -> list[Finding]:
    """Undefined names (F821/F822/F823) via ruff, when the builder has it; none otherwise."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        return []
    try:
        proc = subprocess.run([ruff, "check", "--isolated", "--no-cache", "--select", "F821,F822,F823",
                               "--output-format", "json", "--exit-zero", str(directory)],
                              capture_output=True, text=True, timeout=30)
        items = json.loads(proc.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []  # this check only adds early warnings; the sandboxed run still catches undefined names
    out = []
    for item in items:
        rel = Path(item["filename"]).relative_to(directory).as_posix()
        out.append(Finding(stage="lint", blocking=True, error_class="runtime",
                           where=f"{rel}:{item['location']['row']}", message=item["message"]))
    return out


def lint(draft: ServerDraft, directory: Path, req: Requirement | None = None) -> list[Finding]:
    """Project rules for generated servers, requirements and cases, plus undefined names (draft written to `directory`)."""
    tree = ast.parse(draft.files["server.py"])
    return [*_lint_server(tree, req), *_lint_requirements(draft), *_lint_cases(draft, tree),
            *_ruff_undefined(directory)]


def scan(directory: Path) -> list[Finding]:
    """The sandbox's security scan; findings at or above the default policy's threshold block."""
    from sandbox.scan import ScanPolicy, scan_paths

    raw = scan_paths([directory])
    blocking = set(ScanPolicy().blocking(raw))
    return [Finding(stage="scan", blocking=f in blocking, error_class="security", message=f"[{f.rule}] {f.message}",
                    where=f"{Path(f.file).relative_to(directory).as_posix()}:{f.line}" if Path(f.file).is_absolute()
                    else f.where())
            for f in raw]


async def vet(requirements: list[str], lookup: PyPILookup, now: datetime | None = None) -> tuple[list[Finding],
                                                                                                 dict[str, Any]]:
    """Look every dependency up on PyPI and apply the sandbox's vetting rules; returns findings and the metadata."""
    from sandbox.vet import vet_dependencies

    names = sorted({normalize_package(r) for r in requirements} - {""})
    infos: dict[str, Any] = {}
    unchecked: list[Finding] = []

    async def one(name: str) -> None:
        try:
            infos[name] = await lookup(name)
        except BuildError as e:  # PyPI unreachable: say so, do not guess that the package is missing
            unchecked.append(Finding(stage="vet", blocking=False, error_class="dependency", where=name,
                                     message=f"not vetted, PyPI lookup failed: {e}"))

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(one, name)
    metadata = {name: package_meta(info) for name, info in infos.items()}
    checked = [r for r in requirements if normalize_package(r) in infos]
    found = vet_dependencies(checked, metadata, now=now or datetime.now(UTC))
    return [*unchecked, *(Finding(stage="vet", blocking=f.severity == "blocking", error_class="dependency",
                                  where=f.package, message=f"[{f.rule}] {f.message}") for f in found)], infos


def package_meta(info: Any) -> Any:
    """Convert research.PackageInfo (or None) into the sandbox's PackageMeta (or None)."""
    from sandbox.vet import PackageMeta

    if info is None:
        return None
    return PackageMeta(name=info.name, exists=True, versions=info.releases, first_release=info.first_release,
                       latest_release=info.latest_release, summary=info.summary)


async def reason(draft: ServerDraft, directory: Path, req: Requirement | None, lookup: PyPILookup | None
                 ) -> tuple[ReasonResult, Mapping[str, Any]]:
    """Run every Reason stage on a draft written to `directory`; later stages are skipped after a parse failure."""
    result = ReasonResult()
    t = time.perf_counter()
    result.findings += parse(draft)
    result.seconds["parse"] = time.perf_counter() - t
    infos: Mapping[str, Any] = {}
    if not result.findings:
        for stage, fn in (("lint", lambda: lint(draft, directory, req)), ("scan", lambda: scan(directory))):
            t = time.perf_counter()
            result.findings += await anyio.to_thread.run_sync(fn)
            result.seconds[stage] = time.perf_counter() - t
    if lookup is not None:
        t = time.perf_counter()
        vet_findings, infos = await vet(draft.requirements(), lookup)
        result.findings += vet_findings
        result.seconds["vet"] = time.perf_counter() - t
    return result, infos
