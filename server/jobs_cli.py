"""The CLI's side of jobs: follow one in a terminal (validate, build and library seed do), `status`, `worker`,
and what `doctor` says about the worker."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio

from builder.errors import BuildError, InputError
from builder.jobs import Job, JobState
from builder.service import Foundry

WORKER_ARGV = [sys.executable, "-m", "server.cli", "worker"]
"""How a front end starts the worker of its data dir (its settings travel in the environment)."""
WORKER_START_DELAY_S = 1.0
"""How long after it starts `serve` starts the worker (unless a job needs it sooner)."""


async def start_worker_soon(foundry: Foundry) -> None:
    """Start the data dir's worker a moment after `serve` starts, so that it does not compete with the handshake.

    A client sends `initialize` at once and it is answered within milliseconds of the loop
    starting; a worker's start (a Python process importing the builder) on the same cores
    would slow that answer. A job queued or read meanwhile starts the worker at once.
    """
    await anyio.sleep(WORKER_START_DELAY_S)
    await anyio.to_thread.run_sync(foundry.queue.ensure_worker)


EXIT_WAITING = 3
"""Exit code of `build` and `answer` when they leave the job waiting for an answer."""


def run_job(foundry: Foundry, kind: str, params: dict[str, Any], *, timeout_s: float | None = None,
            quiet: bool = False, stop_at_question: bool = False) -> Job:
    """Queue one job for the worker and follow it, printing its log and progress to stderr; Ctrl-C cancels it.

    With `stop_at_question`, following ends (and the job is left as it is) when the job
    waits for an answer to a question.
    """
    job = foundry.queue.submit(kind, params, timeout_s=timeout_s)
    if not quiet:
        print(f"job {job.id} ({kind}); `mcp-foundry status {job.id}` shows it from another shell", file=sys.stderr)
        note = foundry.queue.note(job)
        if note:
            print(f"  {note}", file=sys.stderr)
    return follow(foundry, job.id, quiet=quiet, stop_at_question=stop_at_question)


def follow(foundry: Foundry, job_id: str, *, quiet: bool = False, stop_at_question: bool = False) -> Job:
    """Follow a job to its end (or, with `stop_at_question`, to its next question), printing its log to stderr;
    Ctrl-C cancels it."""

    def asks(job: Job) -> bool:
        return stop_at_question and waits_for_answer(foundry, job)

    async def run() -> Job:
        printer = _LogPrinter(foundry, job_id, quiet)
        try:
            job = await foundry.queue.wait(job_id, math.inf, on_change=printer, until=asks)
        finally:
            now = foundry.store.get(job_id)
            if not now.final and not asks(now):
                with anyio.CancelScope(shield=True):  # Ctrl-C: the worker stops the job's sandbox before we leave
                    try:
                        await foundry.queue.cancel(job_id, wait_s=15)
                    except BuildError as e:
                        print(f"mcp-foundry: {e}", file=sys.stderr)
        await printer(job)
        return job

    return anyio.run(run)


def waits_for_answer(foundry: Foundry, job: Job) -> bool:
    """The job waits for an answer to an open question."""
    return job.state == JobState.waiting and foundry.store.open_question(job.id) is not None


def print_question(foundry: Foundry, job: Job, as_json: bool) -> int:
    """Print a waiting job's question (instructions and answer schema) to stdout, and how to answer it to stderr."""
    question = foundry.store.open_question(job.id)
    if question is None:
        raise BuildError(f"job {job.id} asks no question now (it is {job.state.value}); `mcp-foundry status "
                         f"{job.id}` shows where it is")
    turn = f", turn {question.turn}, {question.turns_left} more turn(s) after it" if question.turn is not None else ""
    if as_json:
        print(json.dumps({"job_id": job.id, "state": job.state, "question": {
            "id": question.id, "kind": question.kind, "instructions": question.instructions,
            "answer_schema": question.answer_schema, "turn": question.turn, "turns_left": question.turns_left,
            "invalid_answers": question.invalid_answers, "max_invalid": question.max_invalid}}, indent=2))
    else:
        print(f"=== question {question.id} of job {job.id}: {question.kind}{turn} ===\n")
        print(question.instructions)
        print("\n=== the answer: a JSON object valid against this JSON Schema ===")
        print(json.dumps(question.answer_schema, indent=1))
    wait = foundry.settings.client_wait_s
    print(f"job {job.id} waits for your answer to its {question.kind} question (for {wait:g} s at most; the job "
          f"stays in the worker meanwhile). Answer it, a JSON object in a file or on stdin:\n"
          f"  mcp-foundry answer {job.id} {question.id} ANSWER.json\n"
          f"Follow it with `mcp-foundry status {job.id}`; `mcp-foundry status {job.id} --json` holds the question "
          "as JSON.", file=sys.stderr)
    return EXIT_WAITING


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


def print_outcome(job: Job, as_json: bool, render: Callable[[dict[str, Any]], str]) -> int:
    """Print a finished job's report (rendered, or as JSON) and return the command's exit code."""
    if as_json:
        print(json.dumps({"job_id": job.id, "state": job.state, "error": job.error, "result": job.result}, indent=2))
    elif job.result is not None:
        print(render(job.result))
    if job.error and (as_json or job.result is None):
        print(f"job {job.id}: {job.state}: {job.error}", file=sys.stderr)
    elif job.state != "succeeded":
        print(f"job {job.id}: {job.state}", file=sys.stderr)
    return 0 if job.state == "succeeded" else 1


def worker(foundry: Foundry, args: argparse.Namespace) -> int:
    """`mcp-foundry worker`: run queued jobs until idle.

    On the embedded store it is refused when this data dir's worker already runs; on a
    shared store (PostgreSQL) any number run, here and on other machines.
    """
    from builder.jobs.worker import WorkerLock, describe_holder, run_worker

    settings = foundry.settings
    if settings.max_concurrent_jobs < 1:
        raise InputError("--max-jobs", "a worker needs at least one slot",
                         "1..32 (0 is for front ends only: they then start no worker)")
    path = settings.worker_lock
    lock: WorkerLock | None = None
    if args.lock_fd is not None:
        lock = WorkerLock.inherited(path, args.lock_fd)
    elif settings.shared_jobs:
        pass  # one of many workers of a shared store: no lock (front ends still start at most one per data dir)
    else:
        lock = WorkerLock.try_acquire(path)
        if lock is None:
            print(f"mcp-foundry: error: a worker already runs for {settings.data_dir} ({describe_holder(path)}); "
                  "one per data dir: `mcp-foundry doctor` shows it", file=sys.stderr)
            return 2
    try:
        anyio.run(lambda: run_worker(foundry.runner(), lock, idle_s=settings.worker_idle_s))
    except Exception:  # its stderr is /dev/null when a front end started it: the log file is where it is seen
        logging.getLogger("mcp_foundry.jobs").exception("worker stopped by an unexpected error")
        raise
    return 0


def status(foundry: Foundry, args: argparse.Namespace) -> int:
    """`mcp-foundry status [JOB_ID]`: one job's state, progress and log, or the recent jobs."""
    if not args.job_id:
        jobs = foundry.store.list(limit=20)
        if args.json:
            print(json.dumps([j.model_dump(mode="json", exclude={"result"}) for j in jobs], indent=2))
        elif not jobs:
            print("no jobs yet")
        waiting = next((j for j in jobs if j.state == JobState.queued), None)
        note = foundry.queue.note(waiting) if waiting and not args.json else None
        if note:
            print(f"note: queued jobs: {note}")
        for j in [] if args.json else jobs:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at))
            print(f"{j.id}  {j.kind:<8} {j.state:<11} {when}  {(j.error or '').splitlines()[0][:70] if j.error else ''}")
        return 0
    job = foundry.store.get(args.job_id)
    log = foundry.store.log(job.id, tail=20)
    question = foundry.store.open_question(job.id) if job.state == JobState.waiting else None
    if args.json:
        shown = question.model_dump(mode="json", include={"id", "kind", "answer_schema", "turn", "turns_left",
                                                         "invalid_answers", "max_invalid"}) if question else None
        print(json.dumps({**job.model_dump(mode="json"), "eta_s": job.eta_s(), "log_tail": log,
                          "note": foundry.queue.note(job),
                          "question": {**shown, "instructions": question.instructions} if question else None},
                         indent=2))
        return 0
    eta = job.eta_s()
    print(f"job {job.id} ({job.kind}): {job.state}, phase {job.phase}, {job.progress * 100:.0f}%"
          + (f", about {eta:.0f} s left" if eta is not None else "") + (f", worker {job.worker}" if job.worker else ""))
    note = foundry.queue.note(job)
    if note:
        print(f"note: {note}")
    if job.error:
        print(f"error: {job.error}")
    for line in log:
        print(f"  {line}")
    if question is not None:
        print()
        print_question(foundry, job, as_json=False)
    return 0


def worker_lines(foundry: Foundry) -> list[str]:
    """doctor's account of the workers: pid, since when, jobs in hand."""
    workers = foundry.store.workers()
    if not workers and foundry.settings.shared_jobs:
        return ["none running on this job store; start some with `mcp-foundry worker` (on any machine that "
                "reaches it)" + ("" if foundry.settings.max_concurrent_jobs == 0 else
                                 "; front ends here also start one on demand")]
    if not workers:
        if foundry.settings.max_concurrent_jobs == 0:
            return ["none running; max_jobs is 0, so front ends here start none (`mcp-foundry worker` runs one)"]
        return ["none running; serve, validate, build and library seed start one when they need it"]
    lines = []
    now = time.time()
    for w in workers:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w.started_at))
        jobs = [foundry.store.get(job_id) for job_id in w.jobs]
        held = ", ".join(f"{j.id} ({j.kind}, {j.state})" for j in jobs) or "none running"
        lease = f", lease {w.lease_s:g} s" if foundry.settings.shared_jobs else ""
        lines.append(f"{w.id}: pid {w.pid} on {w.host}, since {since} ({_ago(now - w.started_at)}), up to "
                     f"{w.max_jobs} jobs at once{lease}; jobs in hand: {held}")
    return lines


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
