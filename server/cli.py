"""The `mcp-foundry` command line: serve over MCP, and run or inspect jobs from a shell."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import anyio

from builder.config import ENV_VARS, load_settings
from builder.errors import BuildError, InputError
from builder.jobs import Job
from builder.params import validation_params
from builder.service import Foundry
from knowledge.errors import KnowledgeError
from sandbox.errors import SandboxError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcp-foundry", description="An MCP server that builds, validates, deploys and "
                                "remembers MCP servers.")
    p.add_argument("--data-dir", help=f"data directory (env {ENV_VARS['data_dir']}; default: the platform's "
                   "user data dir)")
    p.add_argument("--sandbox", choices=["auto", "bubblewrap", "docker", "process"],
                   help=f"sandbox backend (env {ENV_VARS['sandbox_backend']}; default auto)")
    p.add_argument("--max-jobs", type=int, help=f"concurrent jobs (env {ENV_VARS['max_concurrent_jobs']}; default 2)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def with_description(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add_parser(name, description=kw.get("help"), **kw)

    sub.add_parser = with_description  # type: ignore[method-assign]

    s = sub.add_parser("serve", help="speak MCP over stdio (default) or streamable HTTP")
    s.add_argument("--http", metavar="[HOST:]PORT", help="serve streamable HTTP at http://HOST:PORT/mcp "
                   "(HOST defaults to 127.0.0.1; any other address needs a token)")
    s.add_argument("--token", help=f"bearer token for HTTP (env {ENV_VARS['http_token']})")

    v = sub.add_parser("validate", help="validate an MCP server directory in the sandbox and print the report")
    v.add_argument("path", nargs="?", help="server directory holding server.py")
    v.add_argument("--command", help="instead of PATH: a command line that starts an MCP server on stdio")
    v.add_argument("--cases", help="test-cases JSON file (default PATH/cases.json)")
    v.add_argument("--network", action="store_true", help="allow the server under test to use the network")
    v.add_argument("--timeout", type=float, help="job timeout in seconds")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    st = sub.add_parser("status", help="show a job's state, progress and recent log; without JOB_ID, list recent jobs")
    st.add_argument("job_id", nargs="?", help="a job id printed by validate or build (default: list recent jobs)")
    st.add_argument("--json", action="store_true", help="print as JSON")

    sub.add_parser("doctor", help="which sandbox backends work here, and the configuration in force")

    b = sub.add_parser("build", help="build, validate and deploy an MCP server from a description")
    b.add_argument("description", help="what the server should do, in plain words")
    b.add_argument("--name", help="server name: a lowercase Python identifier (default: chosen by the analysis)")
    b.add_argument("--network", action="store_true", help="the server needs network access")
    b.add_argument("--timeout", type=float, help="build timeout in seconds")
    b.add_argument("--fresh", action="store_true", help="build anew even when a stored server covers the request")
    b.add_argument("--json", action="store_true", help="print the build report as JSON")

    sv = sub.add_parser("servers", help="list deployed servers, show one, roll back or remove")
    sv.add_argument("action", nargs="?", default="list", choices=["list", "show", "rollback", "remove"])
    sv.add_argument("name", nargs="?", help="a deployed server's name, as `servers list` prints it")
    sv.add_argument("--version", help="show: default current; rollback: default the one before current; "
                    "remove: default EVERY version")

    se = sub.add_parser("search", help="search the knowledge repository")
    se.add_argument("query", help="what you need, in plain words")
    se.add_argument("--limit", type=int, default=5, help="at most this many hits (1..20)")
    se.add_argument("--json", action="store_true", help="print the hits as JSON")

    lib = sub.add_parser("library", help="the starter library and the repository's reuse statistics")
    lib.add_argument("action", choices=["seed", "list", "stats", "flag"],
                     help="seed: validate and store the starters; list: the starters; stats: reuse rate, hits by "
                          "case, false-reuse reports; flag JOB_ID --reason R: report a false reuse")
    lib.add_argument("job_id", nargs="?", help="flag: the id of a build that was served from the repository")
    lib.add_argument("--reason", help="flag: what the request asked for that the reused server does not do")
    lib.add_argument("--json", action="store_true", help="stats: print as JSON")

    e = sub.add_parser("envs", help="the dependency-environment cache")
    e.add_argument("action", choices=["list", "cleanup"])
    e.add_argument("--max-age-days", type=float, help="remove envs unused for longer than this")
    e.add_argument("--max-size-mb", type=float, help="then remove least recently used envs above this total")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcp-foundry` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings({"data_dir": args.data_dir, "sandbox_backend": args.sandbox,
                                  "max_concurrent_jobs": args.max_jobs,
                                  "http_token": getattr(args, "token", None)})
        try:
            foundry = Foundry(settings)
        except OSError as e:
            raise InputError("--data-dir", f"cannot create {e.filename or settings.data_dir}: {e.strerror or e}",
                             f"a directory this user can create and write ({ENV_VARS['data_dir']}; the "
                             f"environment cache {ENV_VARS['env_cache_dir']} too)") from None
        _log_to_file(foundry.settings.logs_dir / "mcp-foundry.log")
        return COMMANDS[args.cmd](foundry, args)
    except (BuildError, SandboxError, KnowledgeError) as e:
        print(f"mcp-foundry: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (e.g. `head`) closed the pipe: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _log_to_file(path: Path) -> None:
    """Keep a rotating log of jobs and sandbox warnings in the data directory (stdout stays for protocol messages)."""
    handler = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    jobs = logging.getLogger("mcp_foundry")
    jobs.setLevel(logging.INFO)
    jobs.addHandler(handler)
    jobs.propagate = False  # job lines reach the terminal through the progress display, not twice
    # Warnings (the sandbox's "no isolation here" among them) go to the file and to stderr as plain, unwrapped
    # lines (a client keeps them in its log). Configured before the MCP SDK would install its terminal-formatted
    # handler, which wraps at 80 columns even when stderr is not a terminal.
    logging.getLogger("sandbox").addHandler(handler)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="mcp-foundry: %(levelname)s %(name)s: %(message)s")


def _serve(foundry: Foundry, args: argparse.Namespace) -> int:
    from server.app import build_app
    from server.http import check_bind, parse_bind, serve_http

    bind = parse_bind(args.http) if args.http else None
    if bind:
        check_bind(bind[0], foundry.settings.http_token)

    async def run() -> None:
        async with foundry.runner() as runner:
            app = build_app(foundry, runner)
            if bind:
                print(f"mcp-foundry: serving streamable HTTP at http://{bind[0]}:{bind[1]}/mcp", file=sys.stderr)
                await serve_http(app, bind[0], bind[1], foundry.settings.http_token)
            else:
                await app.run_stdio_async()

    anyio.run(run)
    return 0


def run_job(foundry: Foundry, kind: str, params: dict[str, Any], *, timeout_s: float | None = None,
            quiet: bool = False) -> Job:
    """Run one job in this process, printing its log and progress to stderr; Ctrl-C cancels it."""

    async def run() -> Job:
        async with foundry.runner() as runner:
            job = runner.submit(kind, params, timeout_s=timeout_s)
            printer = _LogPrinter(foundry, job.id, quiet)
            if not quiet:
                print(f"job {job.id} ({kind}); `mcp-foundry status {job.id}` shows it from another shell",
                      file=sys.stderr)
            try:
                job = await runner.wait(job.id, math.inf, on_change=printer)
            finally:
                if not foundry.store.get(job.id).final:
                    with anyio.CancelScope(shield=True):  # Ctrl-C: stop the job's sandbox before leaving
                        await runner.cancel(job.id, wait_s=15)
            await printer(job)
            return job

    return anyio.run(run)


class _LogPrinter:
    """Prints new log lines and progress of a job as it changes."""

    def __init__(self, foundry: Foundry, job_id: str, quiet: bool):
        self.foundry, self.job_id, self.quiet, self.seen = foundry, job_id, quiet, 0
        self.stage: tuple[str, str] = ("", "")

    async def __call__(self, job: Job) -> None:
        if self.quiet:
            return
        if (job.phase, job.message) != self.stage and job.message and not job.final:
            self.stage = (job.phase, job.message)
            print(f"  [{job.progress * 100:3.0f}%] == {job.phase}: {job.message}", file=sys.stderr)
        lines = self.foundry.store.log(self.job_id)
        for line in lines[self.seen:]:
            print(f"  [{job.progress * 100:3.0f}%] {line}", file=sys.stderr)
        self.seen = len(lines)


def _validate(foundry: Foundry, args: argparse.Namespace) -> int:
    from sandbox.report import ValidationReport

    params = validation_params(args.path, args.command, args.cases, args.network, args.timeout)
    foundry.backend  # noqa: B018 - an unusable sandbox backend is refused now, not inside the job
    job = run_job(foundry, "validate", params, timeout_s=args.timeout, quiet=args.json)
    return _print_outcome(job, args.json, lambda r: ValidationReport.model_validate(r["report"]).render())


def _print_outcome(job: Job, as_json: bool, render: Callable[[dict[str, Any]], str]) -> int:
    if as_json:
        print(json.dumps({"job_id": job.id, "state": job.state, "error": job.error, "result": job.result}, indent=2))
    elif job.result is not None:
        print(render(job.result))
    if job.error and (as_json or job.result is None):
        print(f"job {job.id}: {job.state}: {job.error}", file=sys.stderr)
    elif job.state != "succeeded":
        print(f"job {job.id}: {job.state}", file=sys.stderr)
    return 0 if job.state == "succeeded" else 1


def _status(foundry: Foundry, args: argparse.Namespace) -> int:
    if not args.job_id:
        jobs = foundry.store.list(limit=20)
        if args.json:
            print(json.dumps([j.model_dump(mode="json", exclude={"result"}) for j in jobs], indent=2))
        elif not jobs:
            print("no jobs yet")
        for j in [] if args.json else jobs:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at))
            print(f"{j.id}  {j.kind:<8} {j.state:<11} {when}  {(j.error or '').splitlines()[0][:70] if j.error else ''}")
        return 0
    job = foundry.store.get(args.job_id)
    log = foundry.store.log(job.id, tail=20)
    if args.json:
        print(json.dumps({**job.model_dump(mode="json"), "eta_s": job.eta_s(), "log_tail": log}, indent=2))
        return 0
    eta = job.eta_s()
    print(f"job {job.id} ({job.kind}): {job.state}, phase {job.phase}, {job.progress * 100:.0f}%"
          + (f", about {eta:.0f} s left" if eta is not None else ""))
    if job.error:
        print(f"error: {job.error}")
    for line in log:
        print(f"  {line}")
    return 0


def _doctor(foundry: Foundry, args: argparse.Namespace) -> int:
    from builder.llm import LLMConfig, make_provider
    from sandbox.backends import backend_report

    print("sandbox backends:")
    for name, ok, why in backend_report():
        print(f"  {'ok  ' if ok else 'no  '} {name:<11} {why}")
    print(f"  in use: {foundry.backend.name} (setting sandbox_backend={foundry.settings.sandbox_backend})")
    provider = make_provider(LLMConfig.from_env())
    print("optional parts:")
    missing = "not configured (set MCP_FOUNDRY_LLM_BASE_URL and MCP_FOUNDRY_LLM_MODEL; reuse still works)"
    print(f"  LLM provider:  {provider.name if provider else missing}")
    print(f"  registry URL:  {foundry.settings.registry_url or 'not configured'}")
    print(f"  GitHub token:  {'set' if foundry.settings.github_token else 'not set (GitHub search is optional)'}")
    print("settings:")
    for k, v in foundry.settings.public().items():
        var = ENV_VARS.get(k, "")
        print(f"  {k:<20} {v!s:<50} {var}")
    return 0


def _build(foundry: Foundry, args: argparse.Namespace) -> int:
    from builder.params import build_params
    from builder.report import BuildReport

    params = build_params(description=args.description, name=args.name, needs_network=args.network,
                          timeout_s=args.timeout, fresh=args.fresh)
    job = run_job(foundry, "build", params, timeout_s=args.timeout, quiet=args.json)
    return _print_outcome(job, args.json, lambda r: BuildReport.model_validate(r).render())


def _servers(foundry: Foundry, args: argparse.Namespace) -> int:
    from builder import deploy

    root = foundry.settings.servers_dir
    if args.action == "list":
        servers = deploy.list_servers(root)
        if not servers:
            print("no deployed servers")
        for s in servers:
            print(f"{s.name:<30} current {s.current:<8} versions {', '.join(s.versions)}")
        return 0
    if not args.name:
        print(f"mcp-foundry: error: servers {args.action} needs a NAME", file=sys.stderr)
        return 2
    if args.action == "show":
        info = deploy.get_server(root, args.name, args.version)
        print(json.dumps(info.model_dump(mode="json"), indent=2))
    elif args.action == "rollback":
        print(f"{args.name}: current version is now {deploy.rollback_server(root, args.name, args.version).version}")
    else:
        removed = deploy.remove_server(root, args.name, args.version)
        print(f"removed {args.name} {', '.join(removed)}")
    return 0


def _search(foundry: Foundry, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 20:
        raise InputError("--limit", f"{args.limit} is out of range", "1..20, as search_repository's limit")
    matches = foundry.knowledge.find_similar(args.query, limit=args.limit)
    if args.json:
        print(json.dumps([m.model_dump(mode="json", exclude={"case": {"files"}}) for m in matches], indent=2))
        return 0
    if not matches:
        print("no stored case matches (seed the starter library with `mcp-foundry library seed`)")
    elif matches[0].score < WEAK_MATCH:
        print(f"no close match: the best score is {matches[0].score:.2f} (below {WEAK_MATCH}); nearest cases:")
    for i, m in enumerate(matches, 1):
        comps = " ".join(f"{k}={v:.2f}" for k, v in m.components.model_dump().items())
        print(f"{i}. {m.case.server_name}  score {m.score:.3f}  ({comps})\n   {m.case.summary}\n   {m.reason}")
    return 0


def _library(foundry: Foundry, args: argparse.Namespace) -> int:
    from knowledge.starters import list_starters

    if args.action == "list":
        print("starter servers shipped with mcp-foundry (`library seed` validates and stores them):")
        for s in list_starters():
            print(f"  {s.name:<22} {s.description}")
        return 0
    if args.action == "stats":
        return _stats(foundry, args.json)
    if args.action == "flag":
        if not args.job_id or not args.reason:
            raise InputError("library flag", "needs JOB_ID and --reason", "library flag JOB_ID --reason 'what it does "
                             "not do'; `mcp-foundry status` lists job ids")
        report = foundry.knowledge.report_false_reuse(args.job_id, args.reason)
        print(f"reported: build {args.job_id} was served from {report.server_name} ({report.case_id}), which does "
              "not cover it; that request will not be served from it again")
        return 0
    job = run_job(foundry, "seed", {})
    return _print_outcome(job, False, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()
                                                          if k != "starters" and v is not None))


def _stats(foundry: Foundry, as_json: bool) -> int:
    stats = foundry.knowledge.reuse_stats()
    if as_json:
        print(stats.model_dump_json(indent=2))
        return 0
    print(f"builds {stats.builds}: reused {stats.reused}, built {stats.built}, failed {stats.failed}; reuse rate "
          f"{stats.reuse_rate:.0%}")
    if stats.by_how:
        print("reused by: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.by_how.items())))
    print(f"false-reuse reports {stats.false_reuse_reports} ({stats.false_reuse_rate:.0%} of reuses)")
    for h in stats.hits_by_case:
        print(f"  {h.server_name:<28} {h.case_id[:12]}  hits {h.hits:<4} false reports {h.false_reports}")
    for r in stats.reports:
        print(f"  reported {r.created_at:%Y-%m-%d %H:%M} build {r.build_id}: {r.server_name}: {r.reason}")
    return 0


def _envs(foundry: Foundry, args: argparse.Namespace) -> int:
    if args.action == "list":
        for env in foundry.envs.list():
            print(f"{env.key[:16]}  {env.path}  {' '.join(env.requirements)}")
        return 0
    removed = foundry.envs.cleanup(max_age_days=args.max_age_days, max_total_mb=args.max_size_mb)
    print(f"removed {len(removed)} environment(s)")
    return 0


WEAK_MATCH = 0.3
"""A top search score below this is reported as no close match."""

COMMANDS: dict[str, Callable[[Foundry, argparse.Namespace], int]] = {
    "serve": _serve, "validate": _validate, "status": _status, "doctor": _doctor, "build": _build,
    "servers": _servers, "search": _search, "library": _library, "envs": _envs,
}

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
