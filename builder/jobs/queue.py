"""The front end's side of the job store: enqueue, read, wait for and cancel jobs; never run them.

Waiting reads the store: a cheap change counter is polled at a short interval and the
job is read again when it moved (and at least every second, since a worker killed
with -9 writes nothing: its job is seen `interrupted` only by reading it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import anyio

from builder.errors import BuildError, InputError
from builder.jobs.model import PRIORITIES, Job, JobState
from builder.jobs.store import JobStore

log = logging.getLogger("mcp_foundry.jobs")

READ_EVERY_S = 1.0
"""A waiting front end reads its job at least this often, changed or not."""


class JobQueue:
    """Enqueue and follow jobs in `store`; `launcher` (if any) makes sure a local worker runs."""

    def __init__(self, store: JobStore, kinds: Collection[str], *, default_timeout_s: float,
                 launcher: Callable[[], Any] | None = None, poll_s: float = 0.1, scope: str = "this data dir",
                 prepare: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None):
        self.store = store
        self.prepare = prepare
        """Adds what the front end knows and the worker must use to a job's params (kind, params) -> params."""
        self.kinds = list(kinds)
        self.default_timeout_s = default_timeout_s
        self.launcher = launcher
        """Called after a job is queued (and while one waits in the queue): starts a worker when none runs."""
        self.poll_s = poll_s
        self.scope = scope
        """What the workers serve, as `note` names it: "this data dir", or a shared store."""

    def submit(self, kind: str, params: Mapping[str, Any], *, timeout_s: float | None = None) -> Job:
        """Queue a job (ranked by params["priority"]) and return it at once."""
        if kind not in self.kinds:
            raise InputError("kind", f"unknown job kind {kind!r}", ", ".join(sorted(self.kinds)))
        priority = str(params.get("priority") or "normal")
        if priority not in PRIORITIES:
            raise InputError("priority", f"unknown priority {priority!r}", ", ".join(PRIORITIES))
        if self.prepare is not None:
            params = self.prepare(kind, dict(params))
        job = self.store.create(kind, params, timeout_s=timeout_s or self.default_timeout_s, priority=priority)
        log.info("[%s %s] queued: %s", kind, job.id, json.dumps(dict(params))[:500])
        self.ensure_worker()
        return job

    def ensure_worker(self) -> None:
        """Start a local worker if this front end starts workers and none runs (cheap when one does)."""
        if self.launcher is None:
            return
        try:
            self.launcher()
        except OSError as e:  # the job stays queued; the next front end (or `mcp-foundry worker`) runs it
            log.warning("could not start a worker: %s", e)

    def get(self, job_id: str) -> Job:
        """Read a job; a queued one makes sure a worker runs (one killed meanwhile is replaced)."""
        job = self.store.get(job_id)
        if job.state == JobState.queued:
            self.ensure_worker()
        return job

    def note(self, job: Job) -> str | None:
        """Why a queued job does not start, when no worker will take it; None otherwise."""
        if job.state != JobState.queued or self.launcher is not None or self.store.workers():
            return None
        return (f"no worker runs for {self.scope} and this front end starts none (max_jobs 0): the job waits for "
                "a worker; start one with `mcp-foundry worker`, here or on a machine that shares the job store")

    async def wait(self, job_id: str, timeout_s: float,
                   on_change: Callable[[Job], Awaitable[None]] | None = None, *, beat_s: float | None = None,
                   until: Callable[[Job], bool] | None = None) -> Job:
        """Wait until the job is final (or `until(job)` holds) or `timeout_s` passes, calling `on_change` when it
        changes.

        With `beat_s`, `on_change` is also called at least that often while nothing changes.
        """
        job = self.get(job_id)
        now = anyio.current_time()
        deadline = now + timeout_s if math.isfinite(timeout_s) else math.inf
        seen, read_at, called_at, rev = self.store.changes(), now, now, job.rev
        while not job.final and not (until and until(job)) and now < deadline:
            await anyio.sleep(min(self.poll_s, max(0.0, deadline - now)))
            now = anyio.current_time()
            changes = self.store.changes()
            if changes != seen or now - read_at >= READ_EVERY_S:
                seen, read_at = changes, now
                job = self.get(job_id)
            if on_change and (job.rev != rev or job.final or (beat_s is not None and now - called_at >= beat_s)):
                rev, called_at = job.rev, now
                await on_change(job)
        return job

    async def cancel(self, job_id: str, *, wait_s: float = 30) -> Job:
        """Cancel a job and return it once it has unwound; a final job is returned as it is.

        A queued job is cancelled at once. A running or waiting one is stopped by the worker
        holding it: its sandboxed processes stopped and its cleanup run (a build removes what
        it deployed) before it reads `cancelled`, so a caller who sees that state never sees
        the job's leftovers. BuildError when it has not unwound within `wait_s`.
        """
        job = self.store.request_cancel(job_id)
        if not job.final:
            job = await self.wait(job_id, wait_s)
        if not job.final:
            raise BuildError(f"job {job_id} was asked to stop but is still {job.state} after {wait_s:g} s (worker "
                             f"{job.worker}); the request stays recorded and the worker stops it when it can: "
                             "build_status (or `mcp-foundry status`) shows when it has")
        return job
