"""The worker process of a data dir: one at a time (a lock), started on demand by front ends, gone when idle.

Only one worker runs per data dir: it holds an exclusive flock on `<data dir>/worker.lock`
for its whole life. A front end that finds the lock free takes it and hands that very
lock to the worker it starts (an inherited file descriptor), so two front ends starting
at the same moment start one worker, and there is no window in which neither holds it.
The worker is detached (its own session, stdio on /dev/null): closing the session that
started it does not touch it or its jobs.

An idle worker (nothing queued, running or waiting for `idle_s`) stops claiming, lets
the lock go, and then looks at the queue once more: a job queued by a front end that
still saw the lock held is not left behind.

On a shared job store (PostgreSQL) the lock only keeps front ends of one data dir from
starting more than one worker on demand; `mcp-foundry worker` started by hand takes no
lock there, so any number of them, on any machines, serve the one store.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from builder.errors import InputError
from builder.jobs import procs
from builder.jobs.runner import JobRunner

log = logging.getLogger("mcp_foundry.jobs")

RESPAWN_AFTER_S = 2.0
"""A launcher starts at most one worker in this time (a worker that dies at start is not restarted in a loop)."""


class WorkerLock:
    """The exclusive lock of a data dir's worker; the file also says which process holds it."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def try_acquire(cls, path: Path) -> WorkerLock | None:
        """Take the lock, or None when a worker (or a front end starting one) holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    @classmethod
    def inherited(cls, path: Path, fd: int) -> WorkerLock:
        """The lock handed over by the front end that started this process; kept from its own children."""
        try:
            os.set_inheritable(fd, False)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours: this only proves it
        except OSError as e:
            raise InputError("--lock-fd", f"descriptor {fd} does not hold the worker lock {path}: {e.strerror}",
                             "only what a front end passes to the worker it starts; run `mcp-foundry worker` "
                             "without it") from None
        return cls(path, fd)

    def record(self, facts: Mapping[str, Any]) -> None:
        """Write who holds the lock (pid, start time, worker id) into the lock file."""
        data = json.dumps(dict(facts)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Let the lock go (closing the file releases the flock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_lock(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder (empty when unreadable); the flock, not this, is the truth."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


class WorkerLauncher:
    """Starts the data dir's worker, detached, when none runs: call it after queueing a job (cheap if one runs)."""

    def __init__(self, lock_path: Path, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None):
        self.lock_path = lock_path
        self.argv = list(argv)
        """The worker command; `--lock-fd N` is appended."""
        self.env = dict(env)
        self.cwd = cwd
        self._lock = threading.Lock()
        self._started_at = -RESPAWN_AFTER_S

    def __call__(self) -> int | None:
        """Start a worker if none runs; returns its pid, or None when one runs (or was started just now)."""
        with self._lock:
            if time.monotonic() - self._started_at < RESPAWN_AFTER_S:
                return None
            lock = WorkerLock.try_acquire(self.lock_path)
            if lock is None:
                return None
            try:
                proc = subprocess.Popen([*self.argv, "--lock-fd", str(lock.fd)], pass_fds=(lock.fd,),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True, env=self.env, cwd=self.cwd)
            finally:
                lock.release()  # the worker holds the same lock through its inherited descriptor
            self._started_at = time.monotonic()
        # Reap it when it exits (a detached child of a long-lived front end would otherwise linger as a zombie).
        threading.Thread(target=proc.wait, name=f"reap-worker-{proc.pid}", daemon=True).start()
        log.info("started worker pid %d for %s", proc.pid, self.lock_path.parent)
        return proc.pid


async def run_worker(runner: JobRunner, lock: WorkerLock | None, *, idle_s: float, check_s: float = 0.5) -> str:
    """Run `runner` until it has been idle for `idle_s` (0: never) or SIGTERM/SIGINT; returns why it stopped.

    `lock` is the data dir's worker lock, or None for one of many workers of a shared store.
    """
    why = "stopped"
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                nonlocal why
                async for sig in signals:
                    why = f"{signal.Signals(sig).name} received"
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(on_signal)
            async with runner:
                me = runner.worker
                if lock is not None:
                    lock.record({"pid": me.pid, "proc_start": me.proc_start, "worker": me.id,
                                 "started_at": me.started_at})
                log.info("worker %s started: pid %d, up to %d jobs at once, exits after %s", me.id, me.pid,
                         runner.max_jobs, f"{idle_s:g} s idle" if idle_s else "a signal only")
                why = await _until_idle(runner, lock, idle_s, check_s)
            tg.cancel_scope.cancel()  # stop listening for signals
    if lock is not None:
        lock.release()
    log.info("worker %s stops: %s", runner.worker.id, why)
    return why


async def _until_idle(runner: JobRunner, lock: WorkerLock | None, idle_s: float, check_s: float) -> str:
    while True:
        await anyio.sleep(check_s)
        if not idle_s or runner.idle_for() < idle_s:
            continue
        runner.pause()  # from here on it claims nothing, so leaving cannot interrupt a job
        if lock is None:
            if not runner.store.list(state="queued", limit=1):
                return f"idle for {idle_s:g} s"
            runner.resume()
            continue
        lock.release()
        if not runner.store.list(state="queued", limit=1):
            return f"idle for {idle_s:g} s"
        # A front end queued a job while it still saw the lock held: run it, unless a new worker already took over.
        again = WorkerLock.try_acquire(lock.path)
        if again is None:
            return "idle; a new worker took over the queue"
        lock.fd = again.fd
        runner.resume()


def describe_holder(path: Path) -> str:
    """'pid N' of the process the lock file names when it is alive, else 'unknown pid'."""
    facts = read_lock(path)
    pid = facts.get("pid")
    if isinstance(pid, int) and procs.proc_start(pid) is not None:
        return f"pid {pid}"
    return "unknown pid"
