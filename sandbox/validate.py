"""The MCP validator: parse, scan, then run a server in the sandbox and talk to it with a real MCP client over stdio.

Every step records a Check; the first failed check's class (dependency, syntax, import,
runtime, timeout, protocol, assertion, security) tells the builder which healing strategy
to try. This module owns what is validated and the order of the steps: the static checks
on the host, the sandbox (workspace, cgroup, fixtures), then the MCP session
(sandbox.session), whose cases run in sandbox.calls and whose failures are classified in
sandbox.failures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, model_validator

from sandbox.backends.base import Backend
from sandbox.cases import (
    FIXTURES_DIR,
    Case,
    CasesError,
    load_cases,
    parse_cases_text,
)
from sandbox.fixtures import FIXTURES_SCRIPT, Fixtures
from sandbox.limits import confined, disk_state, workspace
from sandbox.policy import safe_env
from sandbox.report import Recorder, ValidationReport
from sandbox.scan import ScanPolicy, scan_source, syntax_error
from sandbox.serverdir import Entry, ServerDirError, copy_tree, kernel_fs, read_bytes, walk
from sandbox.serverdir import requirements_of as requirements_of  # re-exported: callers import it from here
from sandbox.session import TOOL_NAME as TOOL_NAME  # re-exported: the name rule of listed tools
from sandbox.session import run_session
from sandbox.spec import Limits, RunSpec
from sandbox.stdio import ServerIO

if TYPE_CHECKING:
    from sandbox.env import Environment

STDERR_REPORT = 4000


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
    rec = Recorder(log, progress)
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
                    limits: Limits, network: bool, policy: ScanPolicy, rec: Recorder, report: dict[str, Any],
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
            await run_session(launch, workdir, cases, io, rec, report, local, init_timeout, call_timeout, fixtures)


async def _make_fixtures(python: Path, spec: RunSpec, backend: Backend, rec: Recorder,
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


def _static_checks(directory: Path, policy: ScanPolicy, rec: Recorder, report: dict[str, Any]) -> list[Entry] | None:
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


