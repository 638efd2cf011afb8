"""Adopt: vet and deploy a server directory a user wrote (the "deploy" job), through the gates a build passes.

The same validator a build uses (syntax, the security scan, then a real MCP session in the
sandbox running the directory's cases) decides; a server that passes is deployed as a new
version of its name, with what it needs at run time (network, declared secrets) in its
manifest, and stored in the repository as a case (source "user") so that search and reuse
find it. Whatever serves the deployed servers picks the new version up from the servers
directory, whichever process ran this job.
"""

from __future__ import annotations

import ast
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError

from builder.draft import ServerDraft, read_files
from builder.errors import InputError
from builder.jobs import JobContext
from builder.loop import ValidationDigest
from builder.report import Deployment

if TYPE_CHECKING:
    from builder.service import Foundry

NO_CASES = '{"cases": []}\n'


class AdoptReport(BaseModel):
    """What a deploy job did: the verdict, where the server went and the case it left in the repository."""

    ok: bool
    name: str
    error: str | None = None
    validation: ValidationDigest | None = None
    report: dict[str, Any] | None = None
    """The full ValidationReport."""
    deployment: Deployment | None = None
    needs_network: bool = False
    secrets: list[str] = []
    case_id: str | None = None
    notes: list[str] = []
    seconds: float = 0.0


def server_files(directory: Path) -> ServerDraft:
    """The server as a draft: its text files, plus an empty cases.json and a requirements.txt made from
    pyproject.toml's dependencies when the directory has none (so the deployed copy is what was validated)."""
    from sandbox.errors import SandboxError
    from sandbox.validate import requirements_of

    files = read_files(directory)
    if "requirements.txt" not in files:
        try:
            files["requirements.txt"] = "".join(f"{r}\n" for r in requirements_of(directory))
        except SandboxError as e:
            raise InputError("path", str(e), "a requirements.txt or a valid pyproject.toml") from None
    files.setdefault("cases.json", NO_CASES)
    try:
        return ServerDraft(files=files)
    except ValidationError as e:
        problem = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise InputError("path", f"{directory}: {problem}", "a server directory of at most 20 text files "
                         "(600 kB) with server.py at its top") from None


def describe(draft: ServerDraft, tools: list[Any]) -> str:
    """What the server does, in its own words: server.py's docstring, else its tools' descriptions."""
    try:
        doc = ast.get_docstring(ast.parse(draft.files["server.py"])) or ""
    except SyntaxError:
        doc = ""
    if doc.strip():
        return doc.strip()
    return "; ".join(f"{t.name}: {t.description or ''}".strip(": ") for t in tools) or "an MCP server"


async def run_adopt(ctx: JobContext, foundry: Foundry) -> AdoptReport:
    """The "deploy" job: params from builder.params.deploy_params."""
    from builder.deploy import deploy, remove_server
    from sandbox.errors import EnvBuildError
    from sandbox.validate import ValidationTarget, validate_server

    p, t0 = ctx.params, time.monotonic()
    name, network, secrets = p["name"], bool(p.get("needs_network")), list(p.get("secrets") or [])
    out = AdoptReport(ok=False, name=name, needs_network=network, secrets=secrets)
    draft = server_files(Path(p["path"]))
    added = [f for f in ("requirements.txt", "cases.json") if not (Path(p["path"]) / f).is_file()]
    if added:
        out.notes.append(f"added {', '.join(added)} to the deployed copy (the directory had none)")
    work = foundry.settings.work_dir / f"deploy-{ctx.job_id}"
    deployed = None
    try:
        copy = draft.write_to(work / name)
        ctx.progress(0.02, "environment", f"environment for {len(draft.requirements())} requirement(s)")
        try:
            env = await foundry.envs.ensure(draft.requirements(), log=ctx.log)
        except EnvBuildError as e:
            out.error = f"its dependencies do not install: {e}"
            return _finish(ctx, out, t0)
        async with foundry.envs.in_use(env):  # held until deploy has linked it
            report = await validate_server(
                ValidationTarget(directory=copy), backend=foundry.backend, env=env, cases=None, network=network,
                log=ctx.log, progress=lambda f, m: ctx.progress(0.05 + 0.8 * f, "validate", m),
                init_timeout=foundry.settings.init_timeout_s)
            out.validation, out.report = ValidationDigest.of(report), report.model_dump(mode="json")
            if report.verdict != "pass":
                out.error = "validation failed, nothing deployed: " + ("; ".join(out.validation.failed[:3])
                                                                       or "see the report")
                return _finish(ctx, out, t0)
            ctx.progress(0.9, "deploy", f"deploying {name}")
            summary = p.get("description") or describe(draft, report.tools)
            deployed = deploy(foundry.settings.servers_dir, name, draft, env_path=env.path, summary=summary,
                              request=summary, tools=[t.model_dump(mode="json") for t in report.tools],
                              validation=out.report, needs_network=network, secrets=secrets)
        out.deployment = Deployment(name=deployed.name, version=deployed.version, directory=deployed.directory,
                                    command=deployed.command, client_config=deployed.client_config)
        ctx.log(f"deployed {deployed.name} v{deployed.version} at {deployed.directory}")
        ctx.progress(0.95, "learn", "storing the case in the repository")
        out.case_id = await _learn(foundry, draft, report, deployed)
        out.ok = True
        return _finish(ctx, out, t0)
    except BaseException:
        if deployed is not None and not out.ok:  # cancelled or failed after deploying: take the version back
            remove_server(foundry.settings.servers_dir, deployed.name, deployed.version)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(ctx: JobContext, out: AdoptReport, t0: float) -> AdoptReport:
    out.seconds = round(time.monotonic() - t0, 3)
    ctx.log(f"deploy {'succeeded' if out.ok else 'failed'}" + (f": {out.error}" if out.error else ""))
    return out


async def _learn(foundry: Foundry, draft: ServerDraft, report: Any, manifest: Any) -> str:
    from knowledge.models import SuccessCase, ToolInfo, ValidationSummary

    case = SuccessCase(
        request_text=manifest.summary, server_name=manifest.name, summary=manifest.summary, category="user",
        tags=sorted({"user", *(t.name for t in report.tools)}),
        tools=[ToolInfo(name=t.name, description=t.description or "", input_schema=t.input_schema,
                        annotations=t.annotations) for t in report.tools],
        dependencies=draft.requirements(), files=draft.files, deployed_dir=manifest.directory,
        validation_summary=ValidationSummary(passed=sum(c.passed for c in report.cases), total=len(report.cases),
                                             detail=f"{len(report.checks)} checks passed in {report.duration:.2f} s"),
        verdict="passed", source="user")
    store = await anyio.to_thread.run_sync(lambda: foundry.knowledge)
    return await anyio.to_thread.run_sync(lambda: store.add_case(case))
