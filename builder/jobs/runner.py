"""The worker side: a bounded pool that claims queued jobs from the store and runs their handlers.

A runner registers itself as a worker in the store, renews its lease, claims the next
queued job whenever it has a free slot (highest priority first, arrival order within a
priority), and stops a job of its own when a front end records a cancel request. It
runs inside `mcp-foundry worker`, and in-process where embedding code or a test wants
jobs to run in the same process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from pydantic import BaseModel

from builder.jobs.model import SHUT_DOWN, Job, JobState, WorkerInfo
from builder.jobs.store import JobStore

log = logging.getLogger("mcp_foundry.jobs")


class JobContext:
    """What a running job's handler sees: its id and params, a durable log, progress, and `released()`."""

    def __init__(self, runner: JobRunner, job: Job):
        self.job_id = job.id
        self.kind = job.kind
        self.params = job.params
        self.store = runner.store
        """The job store (a handler may put questions to its client through it)."""
        self.worker_id = runner.worker.id
        """The worker that holds this job: every write about the job names it."""
        self._runner = runner
        self._worker = self.worker_id
        self.holds_slot = True
        """False while the job waits inside `released()` (and after it left it by an error)."""
        self.phase = "starting"
        """The phase last reported."""
        self._timeout: anyio.CancelScope | None = None
        self._waited = 0.0
        self._released_at: float | None = None

    @property
    def waited_s(self) -> float:
        """Seconds spent inside `released()` so far: time that counts against neither the job's timeout nor a
        handler's own time budget."""
        ongoing = anyio.current_time() - self._released_at if self._released_at is not None else 0.0
        return self._waited + ongoing

    def log(self, line: str) -> None:
        """Append a line to the job's log (stored before anyone can read it)."""
        self._runner.store.append_log(self.job_id, line)
        log.info("[%s %s] %s", self.kind, self.job_id, line)

    def progress(self, fraction: float, phase: str, message: str = "") -> None:
        """Report progress 0..1 in a named phase."""
        fraction = min(1.0, max(0.0, fraction))
        self.phase = phase
        self._runner.store.update(self.job_id, self._worker, progress=fraction, phase=phase, message=message[:500])

    @asynccontextmanager
    async def released(self, message: str = "waiting", phase: str | None = None) -> AsyncIterator[None]:
        """Wait without holding a worker slot: the job reads `waiting` inside, and takes a slot again after.

        For a job that waits on something outside (a client's answer): other jobs use its
        slot meanwhile, and the time inside, and then waiting for a slot again, stops the
        job's timeout clock (`waited_s`).
        Leaving by an error or a cancel does not wait for a slot again; the job is ending
        then. A cancel request reaches the job while it waits. `phase` (if given) is the
        job's phase inside; the phase before is restored after.
        """
        if not self.holds_slot:
            raise RuntimeError("released() does not nest: this job holds no slot now")
        self.holds_slot = False
        self._runner._slots.give()
        before = self.phase
        self._runner.store.update(self.job_id, self._worker, state=JobState.waiting, message=message[:500],
                                  phase=phase)
        self._runner.wake()
        self._released_at = now = anyio.current_time()
        left = self._timeout.deadline - now if self._timeout is not None else None
        if self._timeout is not None:
            self._timeout.deadline = math.inf
        try:
            yield
            if self._runner._slots.free == 0:
                self._runner.store.update(self.job_id, self._worker, message="waiting for a free worker slot to go on")
            await self._runner._slots.take_again()  # a wait for a slot is no work of the job's either
        finally:
            self._waited += anyio.current_time() - now
            self._released_at = None
            if self._timeout is not None and left is not None:
                self._timeout.deadline = anyio.current_time() + left
        self.holds_slot = True
        self._runner.store.update(self.job_id, self._worker, state=JobState.running, message="", phase=before)


Handler = Callable[[JobContext], Awaitable[BaseModel | Mapping[str, Any]]]


class _Slots:
    """Worker slots; a job taking its slot back after `released()` goes before a new claim."""

    def __init__(self, n: int):
        self.free = n
        self._again = 0
        self._changed = anyio.Event()

    def take_new(self) -> bool:
        if self.free > 0 and self._again == 0:
            self.free -= 1
            return True
        return False

    async def take_again(self) -> None:
        self._again += 1
        try:
            while self.free == 0:
                await self._changed.wait()
            self.free -= 1
        finally:
            self._again -= 1

    def give(self) -> None:
        self.free += 1
        self._changed.set()
        self._changed = anyio.Event()


class JobRunner:
    """Claims and runs jobs, at most `max_jobs` at once (use with `async with`)."""

    def __init__(self, store: JobStore, handlers: Mapping[str, Handler], *, max_jobs: int = 2,
                 lease_s: float = 30.0, poll_s: float = 0.1):
        if max_jobs < 1:
            raise ValueError("a runner needs at least one slot (max_jobs >= 1)")
        self.store = store
        self.handlers = dict(handlers)
        self.max_jobs = max_jobs
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.worker: WorkerInfo
        self._slots = _Slots(max_jobs)
        self._in_hand: dict[str, tuple[anyio.CancelScope, JobContext]] = {}
        self._wake = anyio.Event()
        self._claiming = True
        self._busy_at = time.monotonic()
        self._tg: anyio.abc.TaskGroup | None = None
        self._beating = threading.Event()
        self._lost: str | None = None
        """Id of a registration the heartbeat thread found gone (declared dead), for the event loop to act on."""

    async def __aenter__(self) -> JobRunner:
        self.worker = self.store.register_worker(max_jobs=self.max_jobs, lease_s=self.lease_s)
        for job_id in self.store.reap():
            log.info("[job %s] interrupted: its worker is gone", job_id)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._claim_loop)
        self._tg.start_soon(self._heartbeat_loop)
        self._beating.set()
        threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True).start()
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None
        self._beating.clear()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc)
        finally:
            self.store.unregister_worker(self.worker.id)

    def _beat(self) -> None:
        """Renew the lease every third of it, from a thread of its own.

        The lease says that the process lives; a step that holds the event loop for a while (a
        synchronous write, a busy machine) must not read as death to the workers elsewhere.
        """
        while self._beating.is_set():
            time.sleep(self.lease_s / 3)
            worker_id = self.worker.id
            if not self._beating.is_set():
                return
            try:
                if not self.store.heartbeat(worker_id):
                    self._lost = worker_id
            except Exception as e:  # the store unreachable for a moment: the next beat tries again
                log.warning("worker %s: heartbeat failed: %s", worker_id, e)

    # -- what the worker process reads ------------------------------------------------------------------------------
    @property
    def jobs_in_hand(self) -> list[str]:
        """Ids of the jobs this runner holds (running or waiting)."""
        return list(self._in_hand)

    def idle_for(self) -> float:
        """Seconds since this runner last held a job or found one queued (0 while it holds one)."""
        if self._in_hand:
            return 0.0
        return time.monotonic() - self._busy_at

    def pause(self) -> None:
        """Claim nothing more (jobs in hand go on); `resume()` undoes it."""
        self._claiming = False

    def resume(self) -> None:
        """Claim queued jobs again."""
        self._claiming = True
        self._busy_at = time.monotonic()
        self.wake()

    def wake(self) -> None:
        """Look at the store now rather than at the next poll."""
        self._wake.set()

    # -- loops ------------------------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        seen, read_at = None, 0.0
        while True:
            now = time.monotonic()
            changes = self.store.changes()
            if changes != seen or now - read_at >= 1.0:
                seen, read_at = changes, now
                self._stop_cancelled()
                self._claim()
            with anyio.move_on_after(self.poll_s):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _stop_cancelled(self) -> None:
        if not self._in_hand:
            return
        for job_id in self.store.cancel_requests(self.worker.id):
            scope, ctx = self._in_hand.get(job_id, (None, None))
            if scope is not None and not scope.cancel_called:
                log.info("[%s %s] cancel requested", ctx.kind if ctx else "job", job_id)
                scope.cancel()

    def _claim(self) -> None:
        assert self._tg is not None
        while self._claiming and self._slots.take_new():
            job = self.store.claim_next(self.worker.id, self.handlers)
            if job is None:
                self._slots.give()
                return
            self._busy_at = time.monotonic()
            ctx = JobContext(self, job)
            self._in_hand[job.id] = (anyio.CancelScope(), ctx)
            self._tg.start_soon(self._run, job, ctx)

    async def _heartbeat_loop(self) -> None:
        """Act on a lost lease (the thread in `_beat` renews it) and reap the jobs of dead workers."""
        while True:
            await anyio.sleep(self.lease_s / 3)
            if self._lost is not None and self._lost == self.worker.id:
                self._lost = None
                # Declared dead by another process (a stalled clock, a long pause): its jobs read interrupted
                # already, and writes about them are refused; stop them and come back as a new worker.
                log.warning("worker %s lost its lease; its jobs were interrupted; registering again", self.worker.id)
                for scope, _ in self._in_hand.values():
                    scope.cancel()
                self.worker = self.store.register_worker(max_jobs=self.max_jobs, lease_s=self.lease_s)
            for job_id in self.store.reap():
                log.info("[job %s] interrupted: its worker is gone", job_id)

    async def _run(self, job: Job, ctx: JobContext) -> None:
        scope = self._in_hand[job.id][0]
        worker = self.worker.id
        log.info("[%s %s] started", job.kind, job.id)
        try:
            with scope:
                with anyio.fail_after(job.timeout_s) as ctx._timeout:
                    out = await self.handlers[job.kind](ctx)
                result = out.model_dump(mode="json") if isinstance(out, BaseModel) else dict(out)
                self.store.finish(job.id, _result_state(result), result=result, worker_id=worker,
                                  error=result.get("error") if isinstance(result.get("error"), str) else None)
        except TimeoutError:
            waited = f" (and {ctx.waited_s:.1f} s waiting for answers, which do not count)" if ctx.waited_s else ""
            ctx.log(f"timed out after {job.timeout_s:g} s of work{waited}")
            self.store.finish(job.id, JobState.failed, worker_id=worker, error=f"timed out after {job.timeout_s:g} s "
                              f"of work{waited} (the job's timeout_s); raise it or simplify the request")
        except Exception as e:  # a handler's failure ends its job, never the worker
            ctx.log(f"failed: {type(e).__name__}: {e}")
            self.store.finish(job.id, JobState.failed, worker_id=worker, error=f"{type(e).__name__}: {e}")
        finally:
            del self._in_hand[job.id]
            if ctx.holds_slot:
                self._slots.give()
            if scope.cancel_called:
                self.store.finish(job.id, JobState.cancelled, worker_id=worker, error="cancelled by request")
            # Still open here means the runner itself is shutting down: say so now rather than at the next start.
            self.store.finish(job.id, JobState.interrupted, worker_id=worker, error=SHUT_DOWN)
            final = self.store.get(job.id)
            log.info("[%s %s] %s%s", final.kind, job.id, final.state, f": {final.error}" if final.error else "")
            self._busy_at = time.monotonic()
            self.wake()


def _result_state(result: Mapping[str, Any]) -> JobState:
    """A handler reports an unsuccessful outcome with ok=False (the job still has a result)."""
    return JobState.failed if result.get("ok") is False else JobState.succeeded

