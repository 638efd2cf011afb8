"""GET /metrics: Prometheus text computed from the job store at scrape time, right with any number of workers.

Nothing is counted in this process's memory as it happens: a front end sees only the jobs
it was asked about, and several front ends and workers share one store. Each scrape reads
the store instead: jobs by state, live workers, and from each final job's row and result
its duration, LLM usage, reuse and sandbox runs (see server.rest.facts).

A final job never changes, so its numbers are folded into running totals once and the
job is not read again: a scrape reads the newest jobs (down to a margin of ones already
seen, in case a job committed late), the open ones it knew, and the live workers.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from builder.jobs import Job, JobState, JobStore
from server.rest import facts

DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
PHASE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
WINDOWS = {"1h": 3600.0, "24h": 86400.0}
"""Success rates over jobs finished in these last seconds, besides all of them."""
OPEN_STATES = (JobState.queued, JobState.running, JobState.waiting)
PAGE = 32
"""Jobs read per look at the newest ones (and the margin of known ones that ends the look)."""


class _Histogram:
    """Bucket counts and a sum, kept as jobs are folded in."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))] += 1

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass
class _Totals:
    """Everything folded in from final jobs (they never change)."""

    requests: defaultdict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    submitted: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    durations: dict[tuple[str, str, str], _Histogram] = field(default_factory=dict)
    phases: dict[tuple[str, str], _Histogram] = field(default_factory=dict)
    llm: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    reuse: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    sandbox: defaultdict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    outcomes: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    recent: list[tuple[float, str, bool]] = field(default_factory=list)
    """(finished_at, kind, succeeded) of jobs finished within the longest window."""


class StoreCollector(Collector):
    """A prometheus_client collector whose every metric is derived from the job store when scraped."""

    def __init__(self, store: JobStore):
        self.store = store
        self._lock = threading.Lock()
        self._final: set[str] = set()
        self._open: dict[str, Job] = {}
        self._t = _Totals()

    # -- reading the store ----------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        limit = PAGE
        while True:
            jobs = self.store.list(limit=limit)
            known = sum(1 for j in jobs if j.id in self._final or j.id in self._open)
            if len(jobs) < limit or known >= PAGE // 2:
                break
            limit *= 4
        window = {j.id: j for j in jobs}
        for job in jobs:
            if job.id not in self._final and job.id not in self._open:
                self._t.submitted[(job.kind, job.priority)] += 1
        for job_id in self._open:
            if job_id not in window:
                window[job_id] = self.store.get(job_id)
        for job in window.values():
            if job.id not in self._final:
                self._track(job)

    def _track(self, job: Job) -> None:
        if not job.final:
            self._open[job.id] = job
            return
        self._open.pop(job.id, None)
        if job.id not in self._final:
            self._final.add(job.id)
            self._fold(job)

    def _fold(self, job: Job) -> None:
        t, kind = self._t, job.kind
        t.requests[(kind, job.priority, job.state.value)] += 1
        ok = job.state == JobState.succeeded
        if job.started_at is not None and job.finished_at is not None:
            key = (kind, str(ok).lower(), facts.failure_type(job))
            t.durations.setdefault(key, _Histogram(DURATION_BUCKETS)).observe(job.finished_at - job.started_at)
            t.phases.setdefault((kind, "queue"), _Histogram(PHASE_BUCKETS)).observe(job.started_at - job.created_at)
        for phase, seconds in facts.phases(job).items():
            t.phases.setdefault((kind, phase), _Histogram(PHASE_BUCKETS)).observe(seconds)
        for name, value in facts.usage(job).items():
            t.llm[(kind, name)] += value
        if how := facts.reuse(job):
            t.reuse[how] += 1
        for verdict, failure_class in facts.sandbox_runs(job):
            t.sandbox[(kind, verdict, failure_class)] += 1
        if job.state != JobState.cancelled:  # a cancel is the caller's choice, neither a success nor a failure
            t.outcomes[kind][0 if ok else 1] += 1
            if job.finished_at is not None and time.time() - job.finished_at < max(WINDOWS.values()):
                t.recent.append((job.finished_at, kind, ok))

    # -- the metrics ----------------------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """Read the store and yield every metric family (called by prometheus_client at each scrape)."""
        with self._lock:
            self._refresh()
            workers = self.store.workers()
            yield from self._jobs()
            yield from self._usage()
            alive = GaugeMetricFamily("mcp_workers_alive", "Workers alive (a live process, or an unexpired lease).")
            alive.add_metric([], len(workers))
            yield alive
            slots = GaugeMetricFamily("mcp_worker_slots", "Jobs the live workers can run at once, together.")
            slots.add_metric([], sum(w.max_jobs for w in workers))
            yield slots

    def _jobs(self) -> Iterator[Metric]:
        t = self._t
        requests = CounterMetricFamily("mcp_build_requests", "Finished jobs, by kind, priority and final state.",
                                       labels=["kind", "priority", "status"])
        for (kind, priority, status), n in sorted(t.requests.items()):
            requests.add_metric([kind, priority, status], n)
        submitted = CounterMetricFamily("mcp_build_submitted", "Jobs submitted, by kind and priority.",
                                        labels=["kind", "priority"])
        for (kind, priority), n in sorted(t.submitted.items()):
            submitted.add_metric([kind, priority], n)
        depth = GaugeMetricFamily("mcp_queue_depth", "Open jobs by kind and state (queued, running, waiting).",
                                  labels=["kind", "state"])
        active = GaugeMetricFamily("mcp_active_builds", "Jobs a worker holds now (running or waiting), by kind.",
                                   labels=["kind"])
        kinds = sorted({k for k, _ in t.submitted} | {j.kind for j in self._open.values()})
        for kind in kinds:
            states = [j.state for j in self._open.values() if j.kind == kind]
            for state in OPEN_STATES:
                depth.add_metric([kind, state.value], states.count(state))
            active.add_metric([kind], states.count(JobState.running) + states.count(JobState.waiting))
        duration = HistogramMetricFamily("mcp_build_duration_seconds", "Run time of finished jobs (a worker taking "
                                         "it to its end), by kind, success and failure type.",
                                         labels=["kind", "success", "failure_type"])
        for labels, h in sorted(t.durations.items()):
            duration.add_metric(list(labels), h.buckets(), h.sum)
        phase = HistogramMetricFamily("mcp_phase_duration_seconds", "Seconds per phase of finished jobs (queue: "
                                      "waiting for a worker).", labels=["kind", "phase"])
        for labels, h in sorted(t.phases.items()):
            phase.add_metric(list(labels), h.buckets(), h.sum)
        yield from (requests, submitted, depth, active, duration, phase, self._success_rates())

    def _success_rates(self) -> Metric:
        t = self._t
        rate = GaugeMetricFamily("mcp_build_success_rate", "Succeeded / (succeeded + failed + interrupted) of jobs "
                                 "finished in the window (all: every job in the store); absent without any.",
                                 labels=["kind", "window"])
        for kind, (ok, bad) in sorted(t.outcomes.items()):
            rate.add_metric([kind, "all"], ok / (ok + bad))
        now = time.time()
        t.recent = [r for r in t.recent if now - r[0] < max(WINDOWS.values())]
        for window, seconds in WINDOWS.items():
            tally: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
            for finished, kind, ok in t.recent:
                if now - finished < seconds:
                    tally[kind][0 if ok else 1] += 1
            for kind, (ok, bad) in sorted(tally.items()):
                rate.add_metric([kind, window], ok / (ok + bad))
        return rate

    def _usage(self) -> Iterator[Metric]:
        t = self._t
        calls = CounterMetricFamily("mcp_llm_calls", "LLM requests made by finished jobs.", labels=["kind"])
        tokens = CounterMetricFamily("mcp_llm_tokens", "LLM tokens of finished jobs.", labels=["kind", "type"])
        cost = CounterMetricFamily("mcp_llm_cost_usd", "Estimated LLM cost of finished jobs in USD (0 when no price "
                                   "is known).", labels=["kind"])
        for (kind, name), value in sorted(t.llm.items()):
            if name == "calls":
                calls.add_metric([kind], value)
            elif name == "cost_usd":
                cost.add_metric([kind], value)
            else:
                tokens.add_metric([kind, name.removesuffix("_tokens")], value)
        reuse = CounterMetricFamily("mcp_reuse_hits", "Builds answered by reusing a stored case, by how it was "
                                    "found.", labels=["how"])
        for how in ("exact", "similar"):
            reuse.add_metric([how], t.reuse.get(how, 0))
        sandbox = CounterMetricFamily("mcp_sandbox_runs", "Sandboxed validations run by finished jobs, by verdict and "
                                      "the class of their first failure.", labels=["kind", "verdict", "failure_class"])
        for labels, n in sorted(t.sandbox.items()):
            sandbox.add_metric(list(labels), n)
        yield from (calls, tokens, cost, reuse, sandbox)


def registry_for(store: JobStore) -> CollectorRegistry:
    """A registry holding only the store's metrics (this process's own are not the foundry's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
