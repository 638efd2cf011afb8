"""The MCP validator: parse, scan, then run a server in the sandbox and talk to it with a real MCP client over stdio.

Every step records a Check; the first failed check's class (dependency, syntax, import,
runtime, timeout, protocol, assertion, security) tells the builder which healing strategy
to try. The server's stdio is bridged by our own transport rather than the SDK's so
that stray stdout lines (which break real clients' handshakes) are caught verbatim and
stderr is kept for the report.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import jsonschema
import mcp_types as types
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, model_validator

from sandbox.backends.base import Backend
from sandbox.cases import (
    FIXTURES_DIR,
    Case,
    CasesError,
    expand_fixtures,
    judge_bounded,
    load_cases,
    parse_cases_text,
)
from sandbox.fixtures import FIXTURES_SCRIPT, FixtureError, Fixtures
from sandbox.limits import confined, disk_state, workspace
from sandbox.policy import safe_env
from sandbox.report import (
    CaseResult,
    Check,
    FailureClass,
    PromptInfo,
    ResourceInfo,
    ToolInfo,
    ValidationReport,
)
from sandbox.scan import ScanPolicy, scan_source, syntax_error
from sandbox.serverdir import Entry, ServerDirError, copy_tree, kernel_fs, read_bytes, walk
from sandbox.serverdir import requirements_of as requirements_of  # re-exported: callers import it from here
from sandbox.spec import Launch, Limits, RunSpec
from sandbox.stdio import ServerIO, stdio_transport

if TYPE_CHECKING:
    from sandbox.env import Environment

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STDERR_REPORT = 4000
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b):?\s*(.*)$")


class ValidationTarget(BaseModel):
    """What to validate: a server directory (scanned, copied into the sandbox, run with `entry`) or a command line."""

    model_config = ConfigDict(frozen=True)

    directory: Path | None = None
    """A server directory holding `entry`, and optionally requirements.txt / pyproject.toml and cases.json."""
    entry: str = "server.py"
    """The script to run, relative to `directory`."""
    command: list[str] | None = None
    """A command line that starts an MCP server on stdio (not scanned; run in an empty work dir)."""
    cases_file: Path | None = None
    """Cases to use when none are passed; default: `directory`/cases.json when it exists."""

    @model_validator(mode="after")
    def _one_kind(self) -> ValidationTarget:
        if (self.directory is None) == (self.command is None):
            raise ValueError("ValidationTarget: give exactly one of 'directory' (a server directory) or "
                             "'command' (an argv list that starts a server on stdio)")
        if self.command is not None and (not self.command or not all(isinstance(a, str) and a for a in self.command)):
            raise ValueError(f"ValidationTarget.command must be a non-empty list of non-empty strings, "
                             f"got {self.command!r}")
        if self.directory is not None:
            if kernel_fs(self.directory):
                raise ValueError(f"ValidationTarget.directory {str(self.directory)!r} lies in "
                                 f"{kernel_fs(self.directory)}, a kernel file system; give a server directory")
            if not self.directory.is_dir():
                raise ValueError(f"ValidationTarget.directory {str(self.directory)!r} is not an existing directory")
            entry = Path(self.entry)
            if entry.is_absolute() or ".." in entry.parts or entry.suffix != ".py":
                raise ValueError(f"ValidationTarget.entry {self.entry!r} must be a relative .py path inside "
                                 "the directory, e.g. 'server.py'")
            if not (self.directory / entry).is_file() or (self.directory / entry).is_symlink():
                raise ValueError(f"ValidationTarget.entry: {str(self.directory / entry)!r} is not a regular file; "
                                 "the directory must hold the server's entry script (default 'server.py')")
        return self

    def label(self) -> str:
        """The directory path or the command line, for reports."""
        return str(self.directory) if self.directory is not None else " ".join(self.command or [])


class _Recorder:
    """Collects checks in order and forwards log lines and progress to the caller."""

    def __init__(self, log: Callable[[str], None] | None, progress: Callable[[float, str], None] | None) -> None:
        self.checks: list[Check] = []
        self._log = log
        self._progress = progress

    def check(self, name: str, passed: bool, reason: str, seconds: float = 0.0,
              failure_class: FailureClass | None = None) -> Check:
        item = Check(name=name, passed=passed, reason=reason, seconds=round(seconds, 4),
                     failure_class=None if passed else failure_class)
        self.checks.append(item)
        self.log(f"{'PASS' if passed else 'FAIL'} {name}: {reason}")
        return item

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def progress(self, fraction: float, message: str) -> None:
        if self._progress is not None:
            self._progress(fraction, message)



async def validate_server(
    target: ValidationTarget,
    *,
    backend: Backend,
    env: Environment | None,
    cases: list[Case] | None,
    limits: Limits | None = None,
    network: bool = False,
    policy: ScanPolicy | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
    init_timeout: float = 30.0,
    call_timeout: float = 30.0,
) -> ValidationReport:
    """Validate one MCP server: static checks, then a real MCP session in the sandbox; never raises for a bad server.

    `env` is the dependency environment whose python runs the server (None: the
    builder's own interpreter). `cases` None means the target's cases file, if any.
    The whole run is bounded by `limits.wall_seconds`.
    """
    limits = limits or Limits()
    rec = _Recorder(log, progress)
    started, t0 = datetime.now(UTC), time.monotonic()
    report: dict[str, Any] = {"findings": []}
    io = ServerIO()
    with anyio.move_on_after(limits.wall_seconds) as overall:
        await _validate(target, backend, env, cases, limits, network, policy or ScanPolicy(), rec, report, io,
                        init_timeout, call_timeout)
    if overall.cancelled_caught:
        if not any(c.name == "initialize" for c in rec.checks):
            why = (f"the server had not answered initialize yet (the initialize timeout, {init_timeout:g} s, was "
                   "not reached: raise limits.wall_seconds above it)" if init_timeout >= limits.wall_seconds
                   else "it was still starting")
        else:
            why = "the server or a tool is too slow"
        rec.check("wall-clock limit", False, f"validation did not finish within limits.wall_seconds="
                  f"{limits.wall_seconds:g} s; {why}", limits.wall_seconds, "timeout")
    verdict = "pass" if rec.checks and all(c.passed for c in rec.checks) else "fail"
    rec.progress(1.0, f"verdict: {verdict}")
    return ValidationReport(
        target=target.label(), backend=backend.name, started=started, finished=datetime.now(UTC),
        duration=round(time.monotonic() - t0, 4), checks=rec.checks, verdict=verdict,
        stderr_tail=io.stderr_text()[-STDERR_REPORT:], **report,
    )


async def _validate(target: ValidationTarget, backend: Backend, env: Environment | None, cases: list[Case] | None,
                    limits: Limits, network: bool, policy: ScanPolicy, rec: _Recorder, report: dict[str, Any],
                    io: ServerIO, init_timeout: float, call_timeout: float) -> None:
    if cases is None:
        try:
            cases = _default_cases(target)
        except CasesError as exc:
            rec.check("cases file", False, str(exc), failure_class="syntax")
            return
    entries: list[Entry] = []
    if target.directory is not None:
        checked = _static_checks(target.directory, policy, rec, report)
        if checked is None:
            return
        entries = checked
    python = Path(env.python) if env is not None else Path(sys.executable)
    readonly = (Path(env.path),) if env is not None else (Path(sys.prefix),)
    with workspace(limits.disk_mb, prefix="mcpf-validate") as space:
        workdir = space.workdir
        if target.directory is not None:
            # Only what the walk accepted, re-read without following links; links are copied as links.
            try:
                copy_tree(target.directory, entries, workdir)
            except (ServerDirError, OSError) as exc:
                limit = "" if isinstance(exc, ServerDirError) else f" (the sandbox holds {limits.disk_mb} MiB)"
                rec.check("server directory", False, f"copying it into the sandbox failed: {exc}{limit}",
                          failure_class="security" if isinstance(exc, ServerDirError) else "runtime")
                return
            argv = [str(python), target.entry]
        else:
            argv = list(target.command or [])
        spec = RunSpec(workdir=workdir, readonly_paths=readonly, network=network, limits=limits, tmp_dir=space.tmp,
                       env=safe_env({"PYTHONPATH": str(workdir), "COLUMNS": "160"}))  # COLUMNS: wider log lines
        async with confined(backend, spec) as box:
            report["limits"] = [disk_state(space, limits), *box.states]
            missing = [state.name for state in report["limits"] if not state.in_force]
            if missing:
                rec.log(f"limits NOT in force for this sandbox: {', '.join(missing)} (see the report's limits)")
            local = {e.rel.stem for e in entries if len(e.rel.parts) == 1 and e.rel.suffix == ".py"} | {
                e.rel.parts[0] for e in entries if len(e.rel.parts) == 2 and e.rel.name == "__init__.py"}
            fixtures = None
            if target.directory is not None and (workdir / FIXTURES_SCRIPT).is_file():
                fixtures = await _make_fixtures(python, box.spec, backend, rec, local)
                if fixtures is None:
                    return
            elif target.directory is not None and (workdir / FIXTURES_DIR).is_dir():
                fixtures = Fixtures.collect(workdir)  # files the directory ships in fixtures/
            launch = backend.launch(argv, box.spec)
            rec.progress(0.2, f"starting the server with the {backend.name} backend")
            await _session(launch, workdir, cases, io, rec, report, local, init_timeout, call_timeout, fixtures)


async def _make_fixtures(python: Path, spec: RunSpec, backend: Backend, rec: _Recorder,
                         local: set[str]) -> Fixtures | None:
    """Run the directory's fixtures.py in the sandbox; None (after a failed check) when it fails."""
    from sandbox.fixtures import make

    rec.progress(0.15, "making fixtures")
    made, klass, reason, seconds = await make(python, spec, backend, local)
    rec.check("fixtures", made is not None, reason, seconds, klass)
    return made


def _default_cases(target: ValidationTarget) -> list[Case]:
    if target.cases_file is not None:
        return load_cases(target.cases_file)
    if target.directory is None:
        return []
    try:
        raw = read_bytes(target.directory, "cases.json")
    except FileNotFoundError:
        return []
    except ServerDirError as exc:
        raise CasesError(str(exc)) from None
    return parse_cases_text(raw, source=str(target.directory / "cases.json"))


def _static_checks(directory: Path, policy: ScanPolicy, rec: _Recorder, report: dict[str, Any]) -> list[Entry] | None:
    """The directory's entries, the syntax of every .py file, then the security scan; None when it must not run.

    Everything is read on the host without following links (sandbox.serverdir).
    """
    rec.progress(0.05, "parsing the source")
    t = time.monotonic()
    try:
        entries = walk(directory)
        sources = {str(e.rel): read_bytes(directory, e.rel).decode("utf-8", errors="replace")
                   for e in entries if e.kind == "file" and e.rel.suffix == ".py"}
    except ServerDirError as exc:
        rec.check("server directory", False, str(exc), time.monotonic() - t, "security")
        return None
    broken = [finding for rel, text in sources.items() if (finding := syntax_error(text, rel)) is not None]
    if broken:
        first = broken[0]
        more = f" (and {len(broken) - 1} more file(s))" if len(broken) > 1 else ""
        rec.check("syntax", False, f"{first.where()}: {first.message}{more}", time.monotonic() - t, "syntax")
        return None
    rec.check("syntax", True, f"{len(sources)} Python file(s) parse", time.monotonic() - t)
    rec.progress(0.1, "scanning for unsafe code")
    t = time.monotonic()
    findings = [f for rel, text in sources.items() for f in scan_source(text, rel)]
    report["findings"] = findings
    blocked = policy.blocking(findings)
    if blocked:
        listed = "; ".join(f"{f.where()} {f.rule} ({f.severity}): {f.message}" for f in blocked[:3])
        rec.check("security scan", False, f"{len(blocked)} finding(s) at or above '{policy.block_at}' block the "
                  f"run, nothing was executed: {listed}", time.monotonic() - t, "security")
        return None
    rec.check("security scan", True, f"{len(findings)} finding(s), none at or above '{policy.block_at}'",
              time.monotonic() - t)
    return entries


async def _session(launch: Launch, workdir: Path, cases: list[Case], io: ServerIO, rec: _Recorder,
                   report: dict[str, Any], local_modules: set[str], init_timeout: float, call_timeout: float,
                   fixtures: Fixtures | None = None) -> None:
    """Initialize, list, check definitions and run the cases against the server started by `launch`."""
    # mode="legacy": the initialize handshake every deployed client (Claude Desktop included) performs.
    # The read timeout bounds the initialize request too: it must not cut the initialize limit short.
    client = Client(stdio_transport(launch, workdir, io), mode="legacy", cache=None,
                    read_timeout_seconds=max(call_timeout, init_timeout),
                    client_info=types.Implementation(name="mcp-foundry-validator", version="0.1.0"))
    noise_at = len(rec.checks) + 1  # the stdout check goes right after initialize: noise breaks handshakes
    t = time.monotonic()
    started, failure = False, None
    try:
        # One scope whose deadline covers only the handshake: the client's task group must open and close in it.
        with anyio.CancelScope(deadline=anyio.current_time() + init_timeout) as init_scope:
            async with client:
                started, init_scope.deadline = True, math.inf
                rec.check("initialize", True, f"protocol {client.protocol_version}, server "
                          f"{_server_label(client)} in {time.monotonic() - t:.2f} s", time.monotonic() - t)
                report["protocol_version"] = client.protocol_version
                report["server_info"] = client.server_info.model_dump(exclude_none=True) if client.server_info else None
                report["capabilities"] = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
                rec.progress(0.35, "listing tools, resources and prompts")
                tools = await _list_everything(client, rec, report)
                if tools is not None:
                    await _run_cases(client, cases, tools, io, rec, report, call_timeout, fixtures)
    except Exception as exc:  # a closed pipe or a bad answer: verdicts about the server, not crashes of ours
        failure = exc
    if not started:
        # We stop a silent server ourselves once it is late: its exit code then says nothing about it.
        timed_out = init_scope.cancelled_caught or (
            isinstance(failure, MCPError) and failure.code == types.REQUEST_TIMEOUT)
        klass, reason = _start_failure(failure, timed_out, io, local_modules, init_timeout)
        rec.check("initialize", False, reason, time.monotonic() - t, klass)
    elif failure is not None:
        rec.check("session", False, f"the session broke: {type(failure).__name__}: {str(failure)[:300]}",
                  failure_class="runtime" if io.returncode not in (None, 0) else "protocol")
    _noise_check(io, rec, noise_at)


def _server_label(client: Client) -> str:
    info = client.server_info
    return f"{info.name} {info.version}".strip() if info else "(anonymous)"


def _start_failure(exc: Exception | None, timed_out: bool, io: ServerIO, local_modules: set[str],
                   timeout: float) -> tuple[FailureClass, str]:
    """Why the server never completed initialize: classify by its stderr, exit code and the error seen."""
    stderr = io.stderr_text()
    imports = re.findall(r"^(ModuleNotFoundError|ImportError): (.*)$", stderr, re.MULTILINE)
    if imports:
        kind, message = imports[-1]
        missing = re.search(r"No module named '([^']+)'", message)
        if kind == "ModuleNotFoundError" and missing and "." not in missing.group(1) \
                and missing.group(1) not in local_modules:
            return "dependency", (f"missing dependency: No module named '{missing.group(1)}'; add the distribution "
                                  "that provides it to requirements.txt")
        return "import", f"server fails to import: {kind}: {message[:300]}"
    crash = _last_exception(stderr)
    if crash:
        return "runtime", f"server crashed before answering initialize: {crash}"
    if not timed_out and io.returncode is not None:
        tail = stderr.strip().splitlines()[-1:] or ["(empty)"]
        return "runtime", f"server exited with code {io.returncode} before answering initialize; stderr: {tail[0][:200]}"
    if timed_out or exc is None:
        return "timeout", (f"no answer to initialize within {timeout:g} s; the server is running but silent on "
                           "stdout (does it start the MCP server, e.g. mcp.run(), under `if __name__ == '__main__'`?)")
    return "protocol", f"initialize failed: {type(exc).__name__}: {str(exc)[:300]}"


def _last_exception(stderr: str) -> str | None:
    ours = ("ToolError", "UnexpectedToolError", "MCPServerError")
    for line in reversed(stderr.strip().splitlines()):
        m = _EXCEPTION_LINE.match(line.strip())
        if m and m.group(1).rsplit(".", 1)[-1] not in ours and (m.group(2) or line.strip().endswith(m.group(1))):
            return line.strip()[:300]
    return None


def _noise_check(io: ServerIO, rec: _Recorder, at: int) -> None:
    if io.noise_count:
        shown = ", ".join(repr(line) for line in io.noise[:3])
        check = Check(name="stdout is JSON-RPC only", passed=False, failure_class="protocol",
                      reason=f"the server wrote {io.noise_count} line(s) to stdout that are not JSON-RPC messages "
                      f"({shown}); stdout is the protocol channel, so log and print to stderr instead")
    else:
        check = Check(name="stdout is JSON-RPC only", passed=True, reason="no stray output on stdout")
    rec.checks.insert(min(at, len(rec.checks)), check)
    rec.log(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.reason}")


async def _list_everything(client: Client, rec: _Recorder, report: dict[str, Any]) -> dict[str, ToolInfo] | None:
    """tools/list plus a definition check per tool, then resources and prompts if advertised; None if tools/list fails."""
    t = time.monotonic()
    try:
        listed = await _all_pages(client.list_tools)
    except Exception as exc:  # noqa: BLE001 - any failure here is the server's
        rec.check("tools/list", False, f"tools/list failed: {type(exc).__name__}: {exc}", time.monotonic() - t,
                  "protocol")
        return None
    tools = [ToolInfo(name=tool.name, description=tool.description, input_schema=tool.input_schema,
                      output_schema=tool.output_schema,
                      annotations=tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations
                      else {}) for tool in listed]
    report["tools"] = tools
    rec.check("tools/list", bool(tools), f"{len(tools)} tool(s): {', '.join(t.name for t in tools)}" if tools
              else "the server lists no tools; an MCP server built here must offer at least one",
              time.monotonic() - t, "protocol")
    for tool in tools:
        problems = _definition_problems(tool)
        hints = ", ".join(f"{k}={v}" for k, v in tool.annotations.items() if k.endswith("Hint")) or "no annotations"
        rec.check(f"tool {tool.name[:70]}: definition", not problems,
                  "; ".join(problems) if problems else f"{len(tool.input_schema.get('properties', {}))} "
                  f"parameter(s), {hints}", failure_class="protocol")
    caps = client.server_capabilities
    for kind, advertised in (("resources", caps.resources), ("prompts", caps.prompts)):
        if advertised is None:
            continue
        t = time.monotonic()
        try:
            if kind == "resources":
                items = [ResourceInfo(uri=str(r.uri), name=r.name, description=r.description, mime_type=r.mime_type)
                         for r in await _all_pages(client.list_resources)]
                items += [ResourceInfo(uri=r.uri_template, name=r.name, description=r.description,
                                       mime_type=r.mime_type, template=True)
                          for r in await _all_pages(client.list_resource_templates)]
            else:
                items = [PromptInfo(name=p.name, description=p.description,
                                    arguments=[a.name for a in p.arguments or []])
                         for p in await _all_pages(client.list_prompts)]
        except Exception as exc:  # noqa: BLE001
            rec.check(f"{kind}/list", False, f"{kind} capability advertised but listing failed: {exc}",
                      time.monotonic() - t, "protocol")
            continue
        report[kind] = items
        rec.check(f"{kind}/list", True, f"{len(items)} {kind}", time.monotonic() - t)
    return {tool.name: tool for tool in tools}


async def _all_pages(fetch: Callable[..., Any], cap: int = 50) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(cap):  # a paginator that never ends must not hang validation
        page = await fetch(cursor=cursor)
        items += getattr(page, "tools", None) or getattr(page, "resources", None) or \
            getattr(page, "resource_templates", None) or getattr(page, "prompts", None) or []
        cursor = page.next_cursor
        if not cursor:
            break
    return items


def _definition_problems(tool: ToolInfo) -> list[str]:
    """What is wrong with a listed tool: its name and its input/output schemas."""
    problems = []
    if not TOOL_NAME.match(tool.name):
        bad = sorted({c for c in tool.name if not re.match(r"[A-Za-z0-9_-]", c)})
        why = f"characters {bad} are not allowed" if bad else f"it is {len(tool.name)} characters long"
        problems.append(f"tool name {tool.name[:80]!r} is rejected by clients: {why}; use 1-64 of "
                        "A-Z a-z 0-9 _ -")
    for label, schema in (("inputSchema", tool.input_schema), ("outputSchema", tool.output_schema)):
        if schema is None:
            continue
        if schema.get("type") != "object":
            problems.append(f"{label} must have \"type\": \"object\", got {schema.get('type')!r}")
        if "properties" in schema and not isinstance(schema["properties"], dict):
            problems.append(f"{label}.properties must be an object mapping parameter names to schemas")
        try:
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"{label} is not a valid JSON schema: {exc.message}")
    return problems


async def _run_cases(client: Client, cases: list[Case], tools: dict[str, ToolInfo], io: ServerIO,
                     rec: _Recorder, report: dict[str, Any], call_timeout: float,
                     fixtures: Fixtures | None = None) -> None:
    """Run each case in order in this one session, judge it, and after every error check that the server answers."""
    from sandbox.calls import exercise, unlisted

    results = report.setdefault("cases", [])
    for index, case in enumerate(cases):
        name = f"case {case.label(index)}"
        rec.progress(0.45 + 0.5 * index / max(len(cases), 1), name)
        expected = case.expect.as_json() if case.expect else None
        try:
            reason = unlisted(case, tools, report)
            arguments = _with_fixtures(case, fixtures)
        except FixtureError as exc:
            reason = str(exc)
        if reason is not None:
            results.append(_case_result(case, expected, None, False, False, 0.0, reason))
            rec.check(name, False, reason, failure_class="assertion")
            continue
        stderr_mark = len(io.stderr)
        t = time.monotonic()
        try:
            with anyio.fail_after(call_timeout):
                outcome = await exercise(client, case, arguments)
        except Exception as exc:  # noqa: BLE001 - every way a call can go wrong is a verdict
            seconds = time.monotonic() - t
            klass, reason = _call_failure(exc, io, call_timeout)
            results.append(_case_result(case, expected, None, False, False, seconds * 1000, reason))
            rec.check(name, False, reason, seconds, klass)
            if io.returncode is not None or klass == "timeout":
                return  # dead or stuck: later cases would only repeat this failure
            continue
        seconds = time.monotonic() - t
        failed = {"tool": "tool returned an error result", "resource": "reading the resource failed",
                  "prompt": "getting the prompt failed"}[case.kind]
        passed, reason = await judge_bounded(case.expect, is_error=outcome.is_error, value=outcome.value,
                                             text=outcome.text, failed=failed)
        if outcome.is_error and not passed:
            crash = _last_exception(io.stderr[stderr_mark:].decode("utf-8", errors="replace"))
            reason += f" (server stderr: {crash})" if crash else ""
        results.append(_case_result(case, expected, outcome.value, outcome.is_error, passed, seconds * 1000, reason))
        klass: FailureClass = "runtime" if outcome.is_error else "assertion"
        rec.check(name, passed, reason, seconds, klass)
        if outcome.is_error:
            await _alive_check(client, case.target, rec)


def _with_fixtures(case: Case, fixtures: Fixtures | None) -> dict[str, Any]:
    """The case's arguments with its fixture references replaced (FixtureError when one cannot be)."""
    wanted = case.fixtures()
    if wanted and fixtures is None:
        raise FixtureError(f"the case refers to fixture(s) {wanted}, but the server directory has no "
                           f"{FIXTURES_SCRIPT} to make them")
    return expand_fixtures(case.arguments, fixtures.resolve) if wanted and fixtures else case.arguments


def _case_result(case: Case, expected: dict[str, Any] | None, actual: Any, is_error: bool, passed: bool,
                 latency_ms: float, reason: str) -> CaseResult:
    return CaseResult(tool=case.tool or "", resource=case.resource, prompt=case.prompt, name=case.name,
                      arguments=case.arguments, expected=expected, actual=actual, is_error=is_error, passed=passed,
                      latency_ms=round(latency_ms, 2), reason=reason)


def _call_failure(exc: Exception, io: ServerIO, timeout: float) -> tuple[FailureClass, str]:
    if isinstance(exc, TimeoutError):
        return "timeout", f"no answer within {timeout:g} s"
    if io.returncode is not None:
        crash = _last_exception(io.stderr_text())
        return "runtime", f"the server died during the call (exit code {io.returncode})" + (
            f": {crash}" if crash else "")
    if isinstance(exc, MCPError):
        return "protocol", (f"the call got a JSON-RPC error ({exc.code}: {exc}) instead of a result; a tool "
                            "failure must come back as a result with isError=true")
    if isinstance(exc, RuntimeError) and "structured content" in str(exc).lower():
        return "protocol", f"the result does not match the tool's outputSchema: {exc}"
    return "protocol", f"the call failed: {type(exc).__name__}: {str(exc)[:300]}"


async def _alive_check(client: Client, tool: str, rec: _Recorder) -> None:
    t = time.monotonic()
    try:
        with anyio.fail_after(10):
            await client.list_tools()
    except Exception as exc:  # noqa: BLE001
        rec.check(f"alive after {tool} error", False, f"the server stopped answering after {tool} returned an "
                  f"error: {type(exc).__name__}: {exc}", time.monotonic() - t, "runtime")
        return
    rec.check(f"alive after {tool} error", True, "the server still answers tools/list", time.monotonic() - t)
