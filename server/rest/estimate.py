"""How long a job will take: from its progress while it runs, else from recent jobs of its kind in the store."""

from __future__ import annotations

import statistics
import threading
import time

from builder.jobs import PRIORITIES, Job, JobState, JobStore

DEFAULT_RUN_S = {"validate": 30.0, "deploy": 60.0, "seed": 300.0, "build": 600.0}
"""Run times assumed for a kind with no finished job in the store yet."""
HISTORY = 20
"""Recent succeeded jobs of a kind whose median run time is the estimate."""
CACHE_S = 30.0
"""The median of a kind is read again after this long (it moves slowly; reading it costs rows with results)."""


class Estimator:
    """Estimates from the store, which every front end and worker shares, so that each front end agrees."""

    def __init__(self, store: JobStore):
        self.store = store
        self._median: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def run_s(self, kind: str) -> float:
        """The median run time of the last succeeded jobs of `kind` (a default when there are none)."""
        now = time.monotonic()
        with self._lock:
            cached = self._median.get(kind)
            if cached and now - cached[1] < CACHE_S:
                return cached[0]
        runs = [j.finished_at - j.started_at for j in self.store.list(state="succeeded", kind=kind, limit=HISTORY)
                if j.finished_at and j.started_at]
        value = statistics.median(runs) if runs else DEFAULT_RUN_S.get(kind, 60.0)
        with self._lock:
            self._median[kind] = (value, now)
        return value

    def remaining_s(self, job: Job) -> float | None:
        """Seconds until `job` is final: 0 when it is, None while it waits for an answer from outside."""
        if job.final:
            return 0.0
        if job.state == JobState.waiting:
            return None
        run = self.run_s(job.kind)
        if job.state == JobState.running:
            eta = job.eta_s()
            return eta if eta is not None else max(0.0, run - (time.time() - (job.started_at or time.time())))
        return self._wait_s(job) + run

    def _wait_s(self, job: Job) -> float:
        """Seconds a queued job waits for a slot: the jobs ahead of it, spread over the live workers' slots."""
        rank = PRIORITIES.get(job.priority, 0)
        ahead = [j for j in self.store.list(state=JobState.queued, limit=500)
                 if j.id != job.id and (PRIORITIES.get(j.priority, 0), -j.created_at) > (rank, -job.created_at)]
        slots = sum(w.max_jobs for w in self.store.workers()) or 1
        return sum(self.run_s(j.kind) for j in ahead) / slots
