"""Validation as a job, and the one "prepare the environment, then validate" step that builds share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.jobs import JobContext

if TYPE_CHECKING:
    from builder.service import Foundry
    from sandbox.report import ValidationReport


async def prepare_and_validate(
    foundry: Foundry,
    *,
    directory: Path | None = None,
    command: list[str] | None = None,
    cases_file: Path | None = None,
    cases: list[Any] | None = None,
    network: bool = False,
    log: Callable[[str], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ValidationReport:
    """Build (or reuse) the server's dependency environment, then validate it in the sandbox.

    A dependency set that does not install is reported as a failed "dependency" check,
    not raised, so that the builder can heal it like any other failure.
    """
    from sandbox.errors import EnvBuildError
    from sandbox.report import Check, ValidationReport
    from sandbox.validate import ValidationTarget, requirements_of

    report_progress = progress or (lambda f, m: None)
    target = ValidationTarget(directory=directory, command=command, cases_file=cases_file)
    env = None
    if directory is not None:
        requirements = requirements_of(directory)
        report_progress(0.02, f"environment for {len(requirements)} requirement(s)")
        started = datetime.now(UTC)
        try:
            env = await foundry.envs.ensure(requirements, log=log)
            if log:
                log(f"environment {env.key[:12]} {'created' if env.created else 'reused'} in {env.seconds:.1f} s")
            async with foundry.envs.in_use(env):  # a concurrent `envs cleanup` must not remove it meanwhile
                return await _validate(foundry, target, env, cases, cases_file, network, log, report_progress)
        except EnvBuildError as e:
            return ValidationReport(
                target=target.label(), backend=foundry.backend.name, started=started, finished=datetime.now(UTC),
                duration=(datetime.now(UTC) - started).total_seconds(), verdict="fail",
                checks=[Check(name="dependencies install", passed=False, reason=str(e), failure_class="dependency")])
    return await _validate(foundry, target, env, cases, cases_file, network, log, report_progress)


async def _validate(foundry: Foundry, target: Any, env: Any, cases: list[Any] | None, cases_file: Path | None,
                    network: bool, log: Callable[[str], None] | None,
                    progress: Callable[[float, str], None]) -> ValidationReport:
    from sandbox.cases import load_cases
    from sandbox.validate import validate_server

    if cases is None and cases_file is not None:
        cases = load_cases(cases_file)
    settings = foundry.settings
    return await validate_server(target, backend=foundry.backend, env=env, cases=cases, network=network, log=log,
                                 progress=lambda f, m: progress(0.1 + 0.9 * f, m), limits=settings.sandbox_limits(),
                                 init_timeout=settings.init_timeout_s, call_timeout=settings.case_timeout_s)


async def run_validation(ctx: JobContext, foundry: Foundry) -> dict[str, Any]:
    """The "validate" job: params from builder.params.validation_params; result {"ok", "report", "error"}."""
    p = ctx.params
    report = await prepare_and_validate(
        foundry,
        directory=Path(p["path"]) if p.get("path") else None,
        command=p.get("command"),
        cases_file=Path(p["cases_file"]) if p.get("cases_file") else None,
        network=bool(p.get("needs_network")),
        log=ctx.log,
        progress=lambda f, m: ctx.progress(f, "validate", m),
    )
    ctx.log(f"verdict: {report.verdict}")
    failures = report.failures()
    error = None if report.verdict == "pass" else "; ".join(
        f"{c.name}: {c.reason} [{c.failure_class}]" for c in failures[:3]) or "validation failed"
    return {"ok": report.verdict == "pass", "report": report.model_dump(mode="json"), "error": error}
