"""The `mcp-foundry` command line: serve over MCP, and run or inspect jobs from a shell."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import anyio

from builder.config import ENV_VARS, load_settings
from builder.errors import BuildError, InputError
from builder.params import CODERS, validation_params
from builder.service import Foundry, describe_job_store
from knowledge.errors import KnowledgeError
from sandbox.errors import SandboxError
from server.cli_servers import print_mounts, run_server, servers
from server.gateway.errors import GatewayError
from server.jobs_cli import (
    WORKER_ARGV,
    follow,
    print_outcome,
    print_question,
    run_job,
    start_worker_soon,
    status,
    waits_for_answer,
    worker,
    worker_lines,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcp-foundry", description="An MCP server that builds, validates, deploys and "
                                "remembers MCP servers.")
    p.add_argument("--data-dir", help=f"data directory (env {ENV_VARS['data_dir']}; default: the platform's "
                   "user data dir)")
    p.add_argument("--sandbox", choices=["auto", "bubblewrap", "docker", "process"],
                   help=f"sandbox backend (env {ENV_VARS['sandbox_backend']}; default auto)")
    p.add_argument("--max-jobs", type=int, help="jobs the worker runs at once; 0: this front end starts no worker "
                   f"(env {ENV_VARS['max_concurrent_jobs']}; default 2)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def with_description(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add_parser(name, description=kw.get("help"), **kw)

    sub.add_parser = with_description  # type: ignore[method-assign]

    s = sub.add_parser("serve", help="speak MCP over stdio (default) or streamable HTTP")
    s.add_argument("--http", metavar="[HOST:]PORT", help="serve streamable HTTP at http://HOST:PORT/mcp, with "
                   "the REST API (/api/v1), its WebSocket and /metrics beside it (HOST defaults to 127.0.0.1; any "
                   "other address needs a token)")
    s.add_argument("--token", help=f"bearer token for HTTP (env {ENV_VARS['http_token']})")
    mount = s.add_mutually_exclusive_group()
    mount.add_argument("--no-mount", action="store_true", help="serve only the foundry's own tools, none of the "
                       "deployed servers'")
    mount.add_argument("--mount", metavar="NAME[,NAME...]", help="serve only these deployed servers' tools "
                       "(default: every deployed server, sandboxed)")

    r = sub.add_parser("run", help="run one deployed server over stdio, in the sandbox (what the client config "
                       "snippets use)")
    r.add_argument("name", help="a deployed server's name, as `servers list` prints it")
    r.add_argument("--version", help="a version number (default: the current one)")

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

    sub.add_parser("doctor", help="which sandbox backends work here, the job store and its workers, and the "
                   "configuration in force")

    w = sub.add_parser("worker", help="run queued jobs until idle (front ends start one on demand; one per data "
                       "dir, or any number on many machines with a PostgreSQL job store)")
    w.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the worker lock handed over by a front end

    b = sub.add_parser("build", help="build, validate and deploy an MCP server from a description")
    b.add_argument("description", help="what the server should do, in plain words")
    b.add_argument("--name", help="server name: a lowercase Python identifier (default: chosen by the analysis)")
    b.add_argument("--network", action="store_true", help="the server needs network access")
    b.add_argument("--timeout", type=float, help="build timeout in seconds (time spent waiting for your answers "
                   "does not count)")
    b.add_argument("--fresh", action="store_true", help="build anew even when a stored server covers the request")
    b.add_argument("--coder", choices=list(CODERS), default="auto", help="who writes the requirement and the code: "
                   + "; ".join(f"{k}: {v}" for k, v in CODERS.items()) + " (default auto)")
    b.add_argument("--json", action="store_true", help="print the build report (or the question) as JSON")
    b.epilog = ("Without a configured model the build asks you: it prints the question (its instructions and the "
                "JSON Schema of the answer) and the command that answers it, and exits with code 3, leaving the job "
                "waiting in the worker. Exit codes: 0 built, 1 failed, 2 refused input, 3 waiting for your answer.")

    a = sub.add_parser("answer", help="answer the question a waiting build asks, then follow the build to its next "
                       "question or its end")
    a.add_argument("job_id", help="the waiting build's job id")
    a.add_argument("question_id", help="the id of its question, as `build` or `status` printed it")
    a.add_argument("file", metavar="FILE|-", help="a file holding the answer, a JSON object valid against the "
                   "question's answer schema; - reads it from stdin")
    a.add_argument("--json", action="store_true", help="print the report (or the next question) as JSON")
    a.epilog = ("An invalid answer is refused with one line per problem (exit code 2) and the question stays open; "
                "after as many invalid answers as a model gets attempts, the build fails. Once the answer is taken, "
                "this follows the build as `build` does (Ctrl-C cancels it). Exit codes: 0 built, 1 failed, 2 answer "
                "refused, 3 waiting for your next answer.")

    sv = sub.add_parser("servers", help="list deployed servers, show one, add your own, roll back or remove")
    sv.add_argument("action", nargs="?", default="list", choices=["list", "show", "add", "rollback", "remove"])
    sv.add_argument("name", nargs="?", metavar="NAME|PATH", help="a deployed server's name, as `servers list` "
                    "prints it; for add: the server directory (holding server.py)")
    sv.add_argument("--version", help="show: default current; rollback: default the one before current; "
                    "remove: default EVERY version (and the state dir)")
    sv.add_argument("--name", dest="as_name", metavar="N", help="add: the name to deploy it under (a lowercase "
                    "Python identifier)")
    sv.add_argument("--network", action="store_true", help="add: the server needs the network")
    sv.add_argument("--secret", action="append", default=[], metavar="VAR", help="add: an environment variable "
                    "it receives when it runs, from this environment or <data dir>/secrets.env (repeatable)")
    sv.add_argument("--description", help="add: what it does, for search (default: server.py's docstring)")
    sv.add_argument("--json", action="store_true", help="add: print the job's report as JSON")

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
        if args.cmd != "worker":
            foundry.start_workers(WORKER_ARGV)
        return COMMANDS[args.cmd](foundry, args)
    except (BuildError, SandboxError, KnowledgeError, GatewayError) as e:
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
    from server import rest
    from server.app import build_app
    from server.gateway import Gateway
    from server.http import check_bind, parse_bind, serve_http

    bind = parse_bind(args.http) if args.http else None
    if bind:
        check_bind(bind[0], foundry.settings.http_token)
    only = _mount_names(args.mount) if args.mount else None

    async def run() -> None:
        async with (nullcontext(None) if args.no_mount else Gateway(foundry, only=only)) as gateway, \
                anyio.create_task_group() as tg:
            app = build_app(foundry, gateway)
            tg.start_soon(start_worker_soon, foundry)
            if app.relay is not None:
                tg.start_soon(app.relay.run)
            if gateway is not None and only:
                missing = sorted(only - set(gateway.table.mounts))
                if missing:
                    print(f"mcp-foundry: not deployed (yet): {', '.join(missing)}; mounted once deployed",
                          file=sys.stderr)
            if bind:
                base = f"http://{bind[0]}:{bind[1]}"
                print(f"mcp-foundry: serving streamable HTTP at {base}/mcp, REST at {base}/api/v1 (OpenAPI: "
                      f"{base}/api/v1/openapi.json) and Prometheus metrics at {base}/metrics", file=sys.stderr)
                await serve_http(app, bind[0], bind[1], foundry.settings.http_token,
                                 mount=functools.partial(rest.mount, foundry=foundry, mcp=app))
            else:
                await app.run_stdio_async()
            tg.cancel_scope.cancel()  # a session over before the worker was due starts none

    anyio.run(run)
    return 0


def _mount_names(value: str) -> set[str]:
    names = {n.strip() for n in value.split(",") if n.strip()}
    if not names:
        raise InputError("--mount", f"{value!r} names no server", "NAME[,NAME...], e.g. --mount text_stats,pdf_text")
    return names


def _validate(foundry: Foundry, args: argparse.Namespace) -> int:
    from sandbox.report import ValidationReport

    params = validation_params(args.path, args.command, args.cases, args.network, args.timeout)
    foundry.backend  # noqa: B018 - an unusable sandbox backend is refused now, not inside the job
    job = run_job(foundry, "validate", params, timeout_s=args.timeout, quiet=args.json)
    return print_outcome(job, args.json, lambda r: ValidationReport.model_validate(r["report"]).render())


def _doctor(foundry: Foundry, args: argparse.Namespace) -> int:
    from builder.llm import LLMConfig, make_provider
    from sandbox.backends import backend_report
    from sandbox.container import isolation_lines

    print("sandbox backends:")
    for name, ok, why in backend_report():
        print(f"  {'ok  ' if ok else 'no  '} {name:<11} {why}")
    print(f"  in use: {foundry.backend.name} (setting sandbox_backend={foundry.settings.sandbox_backend})")
    print("where it runs:")
    for line in isolation_lines(foundry.backend):
        print(f"  {line}")
    _print_limits(foundry)
    provider = make_provider(LLMConfig.from_env())
    print("optional parts:")
    missing = ("none: builds ask their caller, who answers with answer_build or `mcp-foundry answer` (set "
               "MCP_FOUNDRY_LLM_BASE_URL and MCP_FOUNDRY_LLM_MODEL to use a model)")
    seconds = getattr(getattr(provider, "inner", provider), "timeout_s", None)
    timeout = f" (fails after {seconds:g} s without a token)" if seconds else ""
    print(f"  LLM provider:  {provider.name if provider else missing}{timeout}")
    print(f"  registry URL:  {foundry.settings.registry_url or 'not configured'}")
    print(f"  GitHub token:  {'set' if foundry.settings.github_token else 'not set (GitHub search is optional)'}")
    print_mounts(foundry)
    print(f"job store: {describe_job_store(foundry.store)}")
    print("workers:" if foundry.settings.shared_jobs else "worker:")
    for line in worker_lines(foundry):
        print(f"  {line}")
    print("settings:")
    for k, v in foundry.settings.public().items():
        var = ENV_VARS.get(k, "")
        print(f"  {k:<20} {v!s:<50} {var}")
    return 0


def _print_limits(foundry: Foundry) -> None:
    from sandbox.limits import expected_states

    limits = foundry.settings.sandbox_limits()
    print("sandbox limits (each sandbox on its own):")
    for state in expected_states(foundry.backend, limits):
        print(f"  {'in force' if state.in_force else 'NOT in force':<13} {state.name:<10} {state.detail}")
    print(f"  per process: RLIMIT_CPU {limits.cpu_seconds} s, RLIMIT_AS {limits.memory_mb} MiB, RLIMIT_FSIZE "
          f"{limits.file_size_mb} MiB; wall clock {limits.wall_seconds:g} s per validation")


def _build(foundry: Foundry, args: argparse.Namespace) -> int:
    from builder.params import build_params

    params = build_params(description=args.description, name=args.name, needs_network=args.network,
                          timeout_s=args.timeout, fresh=args.fresh, coder=args.coder)
    job = run_job(foundry, "build", params, timeout_s=args.timeout, quiet=args.json, stop_at_question=True)
    return _build_outcome(foundry, job, args.json)


def _build_outcome(foundry: Foundry, job: Any, as_json: bool) -> int:
    from builder.report import BuildReport

    if waits_for_answer(foundry, job):
        return print_question(foundry, job, as_json)
    return print_outcome(job, as_json, lambda r: BuildReport.model_validate(r).render())


def _answer(foundry: Foundry, args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("FILE", f"cannot read {args.file}: {getattr(e, 'strerror', None) or e}",
                         "a readable UTF-8 file holding one JSON object, or - for stdin") from None
    job = anyio.run(foundry.answer, args.job_id, args.question_id, text)
    if not args.json:
        print(f"answer to question {args.question_id} taken; job {job.id} is {job.state.value}", file=sys.stderr)
    job = follow(foundry, job.id, quiet=args.json, stop_at_question=True)
    return _build_outcome(foundry, job, args.json)


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
    return print_outcome(job, False, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()
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
    "serve": _serve, "run": run_server, "validate": _validate, "status": status, "doctor": _doctor, "build": _build,
    "servers": servers, "search": _search, "library": _library, "envs": _envs, "worker": worker, "answer": _answer,
}

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
