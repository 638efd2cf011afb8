"""One build, request to deployed server: reuse? -> analyse -> research -> loop -> deploy -> learn.

Reuse (builder.reuse decides; `fresh` skips all of it):
- an exact repeat (same normalized request) is reused before anything else;
- the repository is searched with the request's words; with a model, the analyst sees the
  closest verified candidates and may choose one that covers the request by meaning (with a
  capability -> tool mapping), else writes the requirement; without a model, the closest
  candidate is reused when it covers a description-only request strongly enough, and a request
  naming tools is reused by a case having those tools (REUSE_THRESHOLD);
- a chosen case is re-validated in the sandbox (its own cases plus the caller's examples) and
  deployed, under the caller's name when one was given, with no code generation; one that fails
  re-validation falls back to building, and the report says so.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio

from builder.analyze import analyze, request_text, requirement_notes
from builder.draft import ServerDraft
from builder.errors import BuildError, LLMError, NotConfigured
from builder.heal import primary_class
from builder.jobs import JobContext
from builder.llm.client import asking
from builder.llm.progress import at_most_every, listening
from builder.loop import LoopDeps, ValidationDigest, cleanup, run_loop
from builder.patterns import excerpt
from builder.report import BuildReport, Deployment
from builder.requirement import Requirement
from builder.reuse.decide import analyze_with_candidates
from builder.reuse.phase import ReusePhase
from knowledge.models import Match, SuccessCase

if TYPE_CHECKING:
    from builder.service import Foundry

FINISH_MARGIN_S = 15.0
"""Time kept back from the loop for deploy and learn."""


# ---- the build ---------------------------------------------------------------------------------------------------

class _Build(ReusePhase):
    """State of one running build; the phases are its methods, run in order by `run` (reuse: builder.reuse.phase)."""

    def __init__(self, ctx: JobContext, foundry: Foundry):
        self.ctx, self.foundry, self.settings = ctx, foundry, foundry.settings
        self.params = ctx.params
        self.request = request_text(self.params)
        self.report = BuildReport(ok=False, outcome="failed", request=self.request)
        self.t0 = time.monotonic()
        budget = float(self.params.get("timeout_s") or self.settings.job_timeout_s)
        self.deadline = self.clock() + budget - FINISH_MARGIN_S
        """On `clock()`: by then the loop starts no more turns."""
        self.work = self.settings.work_dir / f"build-{ctx.job_id}"
        self.deployed: Any = None
        self.fresh = bool(self.params.get("fresh"))
        self.flagged: set[str] = set()
        """Ids of cases whose reuse for this very request was reported false: never reused for it again."""
        self.matches: list[Match] = []
        self.cover: list[Any] = []
        self.reused_case: SuccessCase | None = None

    def clock(self) -> float:
        """The build's own time: monotonic seconds less those spent waiting for the client's answers."""
        return time.monotonic() - self.ctx.waited_s

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
        self.report.fresh = self.fresh
        if not self.fresh and await self.reuse_exact():
            return self.finish()
        provider = self.foundry.provider_for(self.ctx)
        candidates = [] if self.fresh else await self.candidates()
        # Reuse comes first: with no model, or with the caller as the model (its time is dear), a request the
        # repository clearly covers costs no question and no model call.
        if (provider is None or provider.name == "client") and not self.fresh \
                and await self.reuse_without_model(candidates):
            return self.finish()
        if provider is None:
            raise NotConfigured(_not_configured_message(self.report.candidates, self.fresh))
        self.report.coder = provider.name
        tokens = at_most_every(1.0, lambda p: self.ctx.progress(
            0.05, "analyze", f"analysing the request ({p.tokens} tokens in {p.seconds:.0f} s)"))
        req: Requirement | None = None
        if candidates:
            with self.phase("analyze", 0.05, f"analysing the request against {len(candidates)} stored server(s)"), \
                    listening(tokens), asking("requirement"):
                answer = await analyze_with_candidates(provider, self.params, candidates, self.report.usage)
            if await self.reuse_chosen(answer.reuse, candidates):
                return self.finish()
            req = answer.requirement
        if req is None:
            with self.phase("analyze", 0.05, "analysing the request"), listening(tokens), asking("requirement"):
                req = await analyze(provider, self.params, self.report.usage)
        self.report.requirement = req
        self.ctx.log(f"requirement: server {req.server_name} with tools {', '.join(req.tool_names())}")
        matches: list[Any] = list(candidates)
        if not candidates and not self.fresh:
            found = await self.reuse_similar(req)
            if found is True:
                return self.finish()
            matches = found or []
        with self.phase("research", 0.1, "researching packages and examples"):
            research = await self.research(req)
        examples = await self.examples(req, matches)
        with self.phase("loop", 0.15, "writing and validating the server"):
            result = await run_loop(req, research, examples, self.loop_deps(provider))
        self.report.turns, self.report.heal_attempts = result.turns, result.heal_attempts
        if not result.ok:
            last = result.turns[-1].failures if result.turns else []
            if result.llm_error is not None:
                await self.learn_failure(req, result.draft, "llm", result.llm_error, strategy="re-ask")
                return self.fail(result.stop_reason)
            cls = primary_class(last) if last else "timeout"
            # The failure's own message, so that the row's signature tells this failure from others of its class.
            final = next((f.message for f in last if f.error_class == cls), result.stop_reason)
            await self.learn_failure(req, result.draft, cls, final)
            return self.fail(f"{result.stop_reason}; last failures: "
                             + "; ".join(f"[{f.error_class}] {f.message[:200]}" for f in last[:3]))
        assert result.draft is not None and result.report is not None and result.env is not None
        with self.phase("deploy", 0.92, "deploying"):
            async with self.foundry.envs.in_use(result.env):
                self.deploy(req.server_name, result.draft, result.env, result.report, summary=req.summary)
        with self.phase("learn", 0.96, "storing what was learned"):
            await self.learn_success(req, result)
        await self.register()
        self.report.ok, self.report.outcome = True, "built"
        return self.finish()

    async def validate(self, directory: Any, env: Any) -> Any:
        from sandbox.validate import ValidationTarget, validate_server

        return await validate_server(ValidationTarget(directory=directory), backend=self.foundry.backend, env=env,
                                     cases=None, network=bool(self.params.get("needs_network")), log=self.ctx.log,
                                     limits=self.settings.sandbox_limits(
                                         wall_seconds=max(10.0, min(120.0, self.deadline - self.clock()))),
                                     init_timeout=self.settings.init_timeout_s,
                                     call_timeout=self.settings.case_timeout_s)

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
               f"{excerpt(m.case.files.get('server.py', ''), 4000)}" for m in matches[:2] if m.score >= 0.3]
        templates = await self.knowledge("list_templates", req.category)
        out += [f"# template {t.name}: {t.description}\n{excerpt(t.files.get('server.py', ''), 3000)}"
                for t in templates[-1:]]
        return "\n\n".join(out)

    def loop_deps(self, provider: Any) -> LoopDeps:
        researcher = self.researcher()
        store = self.foundry.knowledge
        return LoopDeps(provider=provider, usage=self.report.usage, backend=self.foundry.backend,
                        envs=self.foundry.envs, pypi=researcher.pypi, strategy_stats=store.strategy_stats,
                        work_dir=self.work, max_turns=self.settings.max_turns, deadline=self.deadline,
                        clock=self.clock,
                        network=bool(self.params.get("needs_network")), log=self.ctx.log,
                        required_cases=list(self.params.get("examples") or []),
                        notes=requirement_notes(self.report.requirement, self.params)
                        if self.report.requirement else [],
                        init_timeout=self.settings.init_timeout_s, call_timeout=self.settings.case_timeout_s,
                        limits=self.settings.sandbox_limits(),
                        progress=lambda f, m: self.ctx.progress(0.15 + 0.75 * f, "loop", m))

    # -- deploy, register, learn ----------------------------------------------------------------------------------
    def deploy(self, name: str, draft: ServerDraft, env: Any, report: Any, *, summary: str,
               reused: str | None = None) -> None:
        from builder.deploy import deploy

        metrics = {"turns": len(self.report.turns), "usage": self.report.usage.model_dump(),
                   "timings": dict(self.report.timings), "seconds_so_far": round(self.clock() - self.t0, 3)}
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

    async def record(self, report: BuildReport) -> None:
        """Log how this build was served, for `library stats` (a failure to log never fails the build)."""
        from knowledge.errors import KnowledgeError
        from knowledge.reuse_log import ReuseEvent

        reused = report.outcome == "reused"
        name = self.reused_case.server_name if reused and self.reused_case is not None else ""
        event = ReuseEvent(build_id=self.ctx.job_id, request_text=self.request, outcome=report.outcome,
                           case_id=report.reused_case_id or "", server_name=name,
                           how=(report.reuse or "").split(" ")[0], score=report.reuse_score or 0.0)
        try:
            await self.knowledge("record_build", event)
        except KnowledgeError as e:
            report.notes.append(f"the build was not counted in the reuse statistics: {e}")

    async def learn_success(self, req: Requirement, result: Any) -> None:
        from builder.learn import learn_success, success_case

        case = success_case(self.request, req, result.draft, result.report, deployed_dir=self.deployed.directory,
                            build_seconds=self.clock() - self.t0, iterations=len(result.turns),
                            tokens=self.report.usage.prompt_tokens + self.report.usage.completion_tokens)
        store = self.foundry.knowledge
        # learn_success stores the case (one embedding, one commit) and returns its id.
        self.report.case_id = await anyio.to_thread.run_sync(
            lambda: learn_success(store, case, req, result.report, result.heal_attempts))

    async def learn_failure(self, req: Requirement | None, draft: ServerDraft | None, error_class: str, message: str,
                            *, strategy: str = "none") -> None:
        from builder.learn import learn_failure

        store = await anyio.to_thread.run_sync(lambda: self.foundry.knowledge)
        name = req.server_name if req else self.params.get("name", "")
        await anyio.to_thread.run_sync(lambda: learn_failure(
            store, error_class=error_class, message=message, strategy=strategy,
            server_name=name, req=req, draft=draft, attempts=self.report.heal_attempts))


def _not_configured_message(candidates: list[Any], fresh: bool) -> str:
    from builder.llm import HOW_TO_CONFIGURE

    closest = (f" The closest stored server, {candidates[0].server_name}, was not reused: {candidates[0].why}."
               if candidates else " No stored server is close to it.")
    return ("This build asked for the configured model only (coder 'server') and " + HOW_TO_CONFIGURE[0].lower()
            + HOW_TO_CONFIGURE[1:] + "\nOr request it with coder 'auto' (the default) or 'client': the build then "
            "asks you, the caller, and you answer its questions with answer_build (`mcp-foundry answer`)."
            "\nRequests the repository already covers are served without any model: exact repeats, requests naming "
            "a stored server's tools, and descriptions a stored server clearly covers by meaning."
            + (" This build asked for a fresh build (fresh=true), so the repository was not consulted." if fresh
               else closest))


async def run_build(ctx: JobContext, foundry: Foundry) -> BuildReport:
    """The "build" job: returns a BuildReport (ok=False for a failed build, with the reason in `error`)."""
    build = _Build(ctx, foundry)
    try:
        report = await _run(build, foundry)
    finally:
        cleanup(build.work)
    await build.record(report)
    return report


async def _run(build: _Build, foundry: Foundry) -> BuildReport:
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
