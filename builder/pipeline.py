"""One build, request to deployed server: analyse -> reuse? -> research -> loop -> deploy -> learn.

Reuse rules: an exact repeat (same normalized request, checked BEFORE any LLM call) or a
verified case whose tools cover every requested tool with a hybrid score of at least
REUSE_THRESHOLD is re-validated in the sandbox and deployed with no code generation.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, Field

from builder.analyze import analyze, request_text
from builder.draft import ServerDraft
from builder.errors import BuildError, InputError, LLMError, NotConfigured
from builder.jobs import JobContext
from builder.llm.base import Usage
from builder.loop import HealAttempt, LoopDeps, Turn, ValidationDigest, cleanup, run_loop
from builder.requirement import Requirement
from knowledge.models import SearchFilters, SearchQuery, SuccessCase

if TYPE_CHECKING:
    from builder.service import Foundry

REUSE_THRESHOLD = 0.75
"""Least hybrid score (knowledge.search) at which a stored case covering every requested tool is reused."""
FINISH_MARGIN_S = 15.0
"""Time kept back from the loop for deploy and learn."""
_IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


# ---- input -----------------------------------------------------------------------------------------------------

def _str_list(field: str, value: Any, *, max_items: int = 30, max_len: int = 500) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(field, "must be a list of non-empty strings", f"up to {max_items} strings")
    if len(value) > max_items:
        raise InputError(field, f"{len(value)} items", f"at most {max_items}")
    long = [v for v in value if len(v) > max_len]
    if long:
        raise InputError(field, f"item {long[0][:40]!r}... is {len(long[0])} characters", f"at most {max_len}")
    return [v.strip() for v in value]


def build_params(description: str, name: str | None = None, tools: list[str] | None = None,
                 dependencies: list[str] | None = None, constraints: list[str] | None = None,
                 examples: list[dict[str, Any]] | None = None, needs_network: bool = False,
                 priority: str = "normal", timeout_s: float | None = None) -> dict[str, Any]:
    """Check request_build's inputs and return the job parameters; InputError names the bad field."""
    from knowledge.text import normalize_package

    if not isinstance(description, str) or not 8 <= len(description.strip()) <= 8000:
        raise InputError("description", "must say what the server should do in 8 to 8000 characters",
                         "plain words, e.g. 'word and character statistics of a text'")
    if name is not None and (not name or len(name) > 64 or not name[0].isalpha() or not set(name) <= _IDENT_CHARS):
        raise InputError("name", f"{name!r} is not a lowercase Python identifier",
                         "1-64 characters: a lowercase letter, then lowercase letters, digits or '_'")
    deps = _str_list("dependencies", dependencies, max_len=200)
    for d in deps or []:
        if not normalize_package(d) or any(c in d for c in " ;|&$`\\"):
            raise InputError("dependencies", f"{d!r} is not a requirement specifier", "e.g. 'pypdf' or 'pypdf==5.1.0'")
    if examples is not None:
        if not isinstance(examples, list) or len(examples) > 30 or not all(isinstance(e, dict) for e in examples):
            raise InputError("examples", "must be a list of at most 30 objects", '{"tool": ..., "arguments": {...}, '
                             '"expect": {...}}')
        for i, e in enumerate(examples):
            if not isinstance(e.get("tool"), str) or not isinstance(e.get("arguments", {}), dict):
                raise InputError(f"examples[{i}]", "needs 'tool' (a string) and 'arguments' (an object)",
                                 '{"tool": "word_count", "arguments": {"text": "a b"}, "expect": {"equals": 2}}')
        if len(json.dumps(examples, default=str)) > 20_000:
            raise InputError("examples", "more than 20000 characters of JSON", "a few short example calls")
        from sandbox.cases import CasesError, parse_cases

        try:
            parse_cases({"cases": examples}, source="examples")
        except CasesError as e:
            raise InputError("examples", str(e), 'cases: {"tool": ..., "arguments": {...}, "expect": {"equals" | '
                             '"contains" | "matches" | "schema" | "error": ...}}') from None
    if not isinstance(needs_network, bool):
        raise InputError("needs_network", f"{needs_network!r} is not a boolean", "true or false")
    if priority not in ("low", "normal", "high"):
        raise InputError("priority", f"{priority!r} is not a priority", "low, normal or high")
    if timeout_s is not None and not (isinstance(timeout_s, int | float) and 30 <= timeout_s <= 86400):
        raise InputError("timeout_s", f"{timeout_s!r} seconds", "30 to 86400 seconds")
    params: dict[str, Any] = {"description": description.strip(), "needs_network": needs_network,
                              "priority": priority}
    for key, value in (("name", name), ("tools", _str_list("tools", tools, max_len=300)), ("dependencies", deps),
                       ("constraints", _str_list("constraints", constraints)), ("examples", examples),
                       ("timeout_s", timeout_s)):
        if value is not None:
            params[key] = value
    return params


# ---- the report --------------------------------------------------------------------------------------------------

class Deployment(BaseModel):
    """Where the build put the server and how to run it."""

    name: str
    version: str
    directory: str
    command: list[str]
    client_config: dict[str, Any]


class BuildReport(BaseModel):
    """Everything one build did: every turn, findings, validation, failures, strategies, reuse, usage, timings."""

    ok: bool
    outcome: Literal["built", "reused", "failed"]
    request: str
    error: str | None = None
    requirement: Requirement | None = None
    reused_case_id: str | None = None
    reuse: str | None = None
    """How the reused case was found: "exact" or "similar (score ...)"."""
    turns: list[Turn] = Field(default_factory=list)
    heal_attempts: list[HealAttempt] = Field(default_factory=list)
    validation: ValidationDigest | None = None
    """The final validation of the deployed server."""
    validation_text: str = ""
    """The final validation report rendered."""
    deployment: Deployment | None = None
    case_id: str | None = None
    """The repository case stored (or reused)."""
    usage: Usage = Field(default_factory=Usage)
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds per phase."""
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)

    def render(self) -> str:
        """Readable plain text for the CLI."""
        head = {"built": "BUILT", "reused": "REUSED", "failed": "FAILED"}[self.outcome]
        lines = [f"{head}: {self.request.splitlines()[0][:100]} ({self.seconds:.1f} s, {self.usage.calls} LLM calls, "
                 f"{self.usage.prompt_tokens + self.usage.completion_tokens} tokens)"]
        if self.reused_case_id:
            lines.append(f"  reused case {self.reused_case_id} ({self.reuse})")
        for t in self.turns:
            lines.append(f"  turn {t.number}: {t.outcome}; files {', '.join(t.files)}")
            lines += [f"    finding [{f.error_class}] {f.where} {f.message}" for f in t.findings if f.blocking]
            if t.validation:
                lines.append(f"    validation {t.validation.verdict} {t.validation.checks_passed}/"
                             f"{t.validation.checks_total} checks")
                lines += [f"    failed: {x}" for x in t.validation.failed[:5]]
            if t.heal:
                lines.append(f"    heal [{t.heal.error_class}] -> {t.heal.strategy}")
        if self.deployment:
            d = self.deployment
            lines.append(f"  deployed {d.name} v{d.version} at {d.directory}")
            lines.append("  client config: " + json.dumps(d.client_config))
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines)


# ---- the build ---------------------------------------------------------------------------------------------------

class _Build:
    """State of one running build; the phases are its methods, run in order by `run`."""

    def __init__(self, ctx: JobContext, foundry: Foundry):
        self.ctx, self.foundry, self.settings = ctx, foundry, foundry.settings
        self.params = ctx.params
        self.request = request_text(self.params)
        self.report = BuildReport(ok=False, outcome="failed", request=self.request)
        self.t0 = time.monotonic()
        budget = float(self.params.get("timeout_s") or self.settings.job_timeout_s)
        self.deadline = self.t0 + budget - FINISH_MARGIN_S
        self.work = self.settings.work_dir / f"build-{ctx.job_id}"
        self.deployed: Any = None

    @contextmanager
    def phase(self, name: str, fraction: float, message: str = ""):
        self.ctx.progress(fraction, name, message or name)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.report.timings[name] = round(self.report.timings.get(name, 0.0) + time.perf_counter() - t, 4)

    async def knowledge(self, fn: Any, *args: Any) -> Any:
        """Run a (blocking) knowledge-store call in a worker thread."""
        store = await anyio.to_thread.run_sync(lambda: self.foundry.knowledge)
        return await anyio.to_thread.run_sync(lambda: getattr(store, fn)(*args))

    def finish(self) -> BuildReport:
        self.report.seconds = round(time.monotonic() - self.t0, 3)
        self.ctx.log(f"build {self.report.outcome} in {self.report.seconds:.1f} s")
        return self.report

    def fail(self, message: str) -> BuildReport:
        self.report.ok, self.report.outcome, self.report.error = False, "failed", message
        self.ctx.log(f"failed: {message}")
        return self.finish()

    async def run(self) -> BuildReport:
        with self.phase("reuse", 0.02, "looking for an exact repeat"):
            exact = await self.knowledge("find_exact", self.request)
        if exact is not None and exact.verdict == "passed" and await self.reuse(exact, "exact"):
            return self.finish()
        provider = self.foundry.provider_for(self.ctx.job_id)
        if provider is None:
            if self.params.get("tools") and await self.reuse_similar(None) is True:
                return self.finish()
            raise NotConfigured(_not_configured_message())
        with self.phase("analyze", 0.05, "analysing the request"):
            req = await analyze(provider, self.params, self.report.usage)
        self.report.requirement = req
        self.ctx.log(f"requirement: server {req.server_name} with tools {', '.join(req.tool_names())}")
        matches = await self.reuse_similar(req)
        if matches is True:
            return self.finish()
        with self.phase("research", 0.1, "researching packages and examples"):
            research = await self.research(req)
        examples = await self.examples(req, matches or [])
        with self.phase("loop", 0.15, "writing and validating the server"):
            result = await run_loop(req, research, examples, self.loop_deps(provider))
        self.report.turns, self.report.heal_attempts = result.turns, result.heal_attempts
        if not result.ok:
            last = result.turns[-1].failures if result.turns else []
            await self.learn_failure(req, result.draft, last[0].error_class if last else "timeout",
                                     result.stop_reason, final_row=not result.heal_attempts)
            return self.fail(f"{result.stop_reason}; last failures: "
                             + "; ".join(f"[{f.error_class}] {f.message[:200]}" for f in last[:3]))
        assert result.draft is not None and result.report is not None and result.env is not None
        with self.phase("deploy", 0.92, "deploying"):
            self.deploy(req.server_name, result.draft, result.env, result.report, summary=req.summary)
        with self.phase("learn", 0.96, "storing what was learned"):
            await self.learn_success(req, result)
        await self.register()
        self.report.ok, self.report.outcome = True, "built"
        return self.finish()

    # -- reuse ----------------------------------------------------------------------------------------------------
    async def reuse_similar(self, req: Requirement | None) -> bool | list[Any]:
        """Reuse a verified case covering every requested tool; returns True when reused, else the matches seen."""
        wanted = req.tool_names() if req else [t for t in self.params.get("tools", []) if t.isidentifier()]
        if not wanted:
            return []
        query = SearchQuery(text=self.params["description"], tool_names=wanted,
                            tool_params=req.param_names() if req else [],
                            dependencies=req.dependency_names() if req else [])
        with self.phase("reuse", 0.08, "searching the repository"):
            matches = await self.knowledge("find_similar", query, 5, SearchFilters(verdict="passed"))
        for m in matches:
            covered = set(wanted) <= {t.name for t in m.case.tools}
            if m.score >= REUSE_THRESHOLD and covered:
                if await self.reuse(m.case, f"similar (score {m.score:.2f}: {m.reason})"):
                    return True
        return matches

    async def reuse(self, case: SuccessCase, how: str) -> bool:
        """Re-validate a stored case and deploy it; False (with a note) when it no longer validates."""
        from sandbox.errors import EnvBuildError

        with self.phase("reuse", 0.1, f"re-validating stored case {case.server_name}"):
            draft = _case_draft(case)
            if draft is None:
                self.report.notes.append(f"case {case.id} has neither files nor a deployed directory; not reused")
                return False
            directory = draft.write_to(self.work / "reuse")
            try:
                env = await self.foundry.envs.ensure(draft.requirements(), log=self.ctx.log)
            except EnvBuildError as e:
                self.report.notes.append(f"case {case.id} not reused: its dependencies no longer install: {e}")
                return False
            report = await self.validate(directory, env)
        if report.verdict != "pass":
            self.report.notes.append(f"case {case.id} ({case.server_name}) failed re-validation; building anew")
            self.ctx.log(self.report.notes[-1])
            return False
        with self.phase("deploy", 0.9, "deploying the reused server"):
            self.deploy(case.server_name, draft, env, report, summary=case.summary, reused=case.id)
        with self.phase("learn", 0.95, "counting the reuse"):
            await self.knowledge("mark_reused", case.id)
        await self.register()
        self.report.ok, self.report.outcome = True, "reused"
        self.report.reused_case_id, self.report.case_id, self.report.reuse = case.id, case.id, how
        self.ctx.log(f"reused case {case.id} ({how})")
        return True

    async def validate(self, directory: Any, env: Any) -> Any:
        from sandbox.spec import Limits
        from sandbox.validate import ValidationTarget, validate_server

        return await validate_server(ValidationTarget(directory=directory), backend=self.foundry.backend, env=env,
                                     cases=None, network=bool(self.params.get("needs_network")), log=self.ctx.log,
                                     limits=Limits(wall_seconds=max(10.0, min(120.0, self.deadline - time.monotonic()))))

    # -- research and prompt material --------------------------------------------------------------------------
    def researcher(self) -> Any:
        from builder.research import Researcher

        s = self.settings
        return Researcher(s.cache_dir / "research", pypi_url=s.pypi_url, github_api_url=s.github_api_url,
                          github_token=s.github_token)

    async def research(self, req: Requirement) -> str:
        from builder.research import quote_untrusted

        res = await self.researcher().gather(self.params["description"], req.dependency_names())
        self.report.notes += res.notes
        parts = [f"package {n}: " + (f"{i.latest_version} - {i.summary} (requires_python {i.requires_python})"
                                     if i else "NOT on PyPI") for n, i in res.packages.items()]
        parts += [f"repository {r.full_name} ({r.stars} stars): {r.description}" for r in res.repos[:5]]
        parts += [f"doc {d.url} {d.title}:\n{d.text[:3000]}" for d in res.docs]
        return quote_untrusted("\n".join(parts), source="PyPI, repository search and documentation") if parts else ""

    async def examples(self, req: Requirement, matches: list[Any]) -> str:
        """Server code of the closest stored cases and a template of the same category, for the prompt."""
        out = [f"# {m.case.server_name} (similarity {m.score:.2f}): {m.case.summary}\n"
               f"{m.case.files.get('server.py', '')[:4000]}" for m in matches[:2] if m.score >= 0.3]
        templates = await self.knowledge("list_templates", req.category)
        out += [f"# template {t.name}: {t.description}\n{t.files.get('server.py', '')[:3000]}" for t in templates[-1:]]
        return "\n\n".join(out)

    def loop_deps(self, provider: Any) -> LoopDeps:
        researcher = self.researcher()
        store = self.foundry.knowledge
        return LoopDeps(provider=provider, usage=self.report.usage, backend=self.foundry.backend,
                        envs=self.foundry.envs, pypi=researcher.pypi, strategy_stats=store.strategy_stats,
                        work_dir=self.work, max_turns=self.settings.max_turns, deadline=self.deadline,
                        network=bool(self.params.get("needs_network")), log=self.ctx.log,
                        required_cases=list(self.params.get("examples") or []),
                        progress=lambda f, m: self.ctx.progress(0.15 + 0.75 * f, "loop", m))

    # -- deploy, register, learn ----------------------------------------------------------------------------------
    def deploy(self, name: str, draft: ServerDraft, env: Any, report: Any, *, summary: str,
               reused: str | None = None) -> None:
        from builder.deploy import deploy

        metrics = {"turns": len(self.report.turns), "usage": self.report.usage.model_dump(),
                   "timings": dict(self.report.timings), "seconds_so_far": round(time.monotonic() - self.t0, 3)}
        manifest = deploy(self.settings.servers_dir, name, draft, env_path=env.path, summary=summary,
                          request=self.request, tools=[t.model_dump(mode="json") for t in report.tools],
                          validation=report.model_dump(mode="json"), metrics=metrics, reused_case_id=reused)
        self.deployed = manifest
        self.report.deployment = Deployment(name=manifest.name, version=manifest.version,
                                            directory=manifest.directory, command=manifest.command,
                                            client_config=manifest.client_config)
        self.report.validation = ValidationDigest.of(report)
        self.report.validation_text = report.render()
        self.ctx.log(f"deployed {manifest.name} v{manifest.version} at {manifest.directory}")

    async def register(self) -> None:
        from builder.deploy import register

        if self.settings.registry_url and self.deployed is not None:
            reg = await register(self.deployed, self.settings.registry_url, log=self.ctx.log)
            self.report.notes.append(f"registry {reg.url}: " + ("registered" if reg.ok else
                                     f"not registered after {reg.attempts} attempts ({reg.error}); the build "
                                     "is deployed all the same"))

    async def learn_success(self, req: Requirement, result: Any) -> None:
        from builder.learn import learn_success, success_case

        case = success_case(self.request, req, result.draft, result.report, deployed_dir=self.deployed.directory,
                            build_seconds=time.monotonic() - self.t0, iterations=len(result.turns),
                            tokens=self.report.usage.prompt_tokens + self.report.usage.completion_tokens)
        self.report.case_id = await self.knowledge("add_case", case)
        store = self.foundry.knowledge
        await anyio.to_thread.run_sync(lambda: learn_success(store, case, req, result.report, result.heal_attempts))

    async def learn_failure(self, req: Requirement | None, draft: ServerDraft | None, error_class: str, message: str,
                            *, strategy: str = "none", final_row: bool = True) -> None:
        from builder.learn import learn_failure

        store = await anyio.to_thread.run_sync(lambda: self.foundry.knowledge)
        name = req.server_name if req else self.params.get("name", "")
        await anyio.to_thread.run_sync(lambda: learn_failure(
            store, error_class=error_class if final_row else None, message=message, strategy=strategy,
            server_name=name, req=req, draft=draft, attempts=self.report.heal_attempts))


def _case_draft(case: SuccessCase) -> ServerDraft | None:
    """The files of a stored case, from the case itself or its deployed directory."""
    from pathlib import Path

    if case.files:
        return ServerDraft(files=case.files)
    if case.deployed_dir and Path(case.deployed_dir).is_dir():
        return ServerDraft.read_from(Path(case.deployed_dir))
    return None


def _not_configured_message() -> str:
    from builder.llm import HOW_TO_CONFIGURE

    return ("This build needs code generation and " + HOW_TO_CONFIGURE[0].lower() + HOW_TO_CONFIGURE[1:]
            + "\nRequests the repository already covers are served without an LLM.")


async def run_build(ctx: JobContext, foundry: Foundry) -> BuildReport:
    """The "build" job: returns a BuildReport (ok=False for a failed build, with the reason in `error`)."""
    build = _Build(ctx, foundry)
    try:
        return await build.run()
    except NotConfigured as e:
        return build.fail(str(e))
    except LLMError as e:
        await build.learn_failure(build.report.requirement, None, "llm", str(e), strategy="re-ask")
        return build.fail(f"the LLM kept failing: {e}")
    except BuildError as e:
        return build.fail(str(e))
    except BaseException:
        # Cancelled or timed out: a deploy of this build must not outlive it.
        if build.deployed is not None:
            from builder.deploy import remove_server

            remove_server(foundry.settings.servers_dir, build.deployed.name, build.deployed.version)
        raise
    finally:
        cleanup(build.work)
