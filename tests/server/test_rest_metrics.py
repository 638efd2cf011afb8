"""/metrics is derived from the job store: jobs finished by several workers, read by several front ends, agree.

The jobs are written through the JobStore protocol as workers write them (register, claim,
report, finish), with results made from the builder's own report models; the collector
under test is the one `/metrics` serves.
"""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from builder.heal import ClassifiedFailure
from builder.jobs import JobState, SqliteJobStore
from builder.llm.base import Usage
from builder.loop import Turn, ValidationDigest
from builder.report import BuildReport
from server.rest.metrics import registry_for

PASS = ValidationDigest(verdict="pass", checks_passed=5, checks_total=5)
FAIL = ValidationDigest(verdict="fail", checks_passed=4, checks_total=5, failed=["case #0 add: got 4 [assertion]"])


def scrape(registry) -> dict:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run(store, worker, result=None, *, kind="build", state=None, error=None, priority="normal"):
    job = store.create(kind, {"priority": priority}, timeout_s=60, priority=priority)
    claimed = store.claim_next(worker.id, [kind])
    assert claimed is not None and claimed.id == job.id
    if state is None:
        state = JobState.failed if result is not None and result.get("ok") is False else JobState.succeeded
    if state in (JobState.running, JobState.waiting):
        return job.id
    assert store.finish(job.id, state, result=result, error=error, worker_id=worker.id)
    return job.id


def build_report(outcome, *, turns=(), usage=None, reuse=None, timings=None):
    return BuildReport(ok=outcome != "failed", outcome=outcome, request="word statistics of a text", turns=list(turns),
                       usage=usage or Usage(), reuse=reuse, validation=PASS if outcome == "reused" else None,
                       timings=timings or {}).model_dump(mode="json")


def test_metrics_from_two_workers_agree_on_two_front_ends_and_fold_each_final_job_once(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    workers_store = SqliteJobStore(db)
    a = workers_store.register_worker(max_jobs=2, lease_s=30)
    b = workers_store.register_worker(max_jobs=3, lease_s=30)
    healed = [Turn(number=1, validation=FAIL, failures=[ClassifiedFailure(error_class="assertion", message="got 4",
                                                                          source="validation")]),
              Turn(number=2, validation=PASS)]
    run(workers_store, a, build_report("reused", reuse="exact", timings={"reuse": 1.5, "deploy": 0.2}))
    run(workers_store, b, build_report("built", turns=healed, usage=Usage(calls=3, prompt_tokens=1000,
                                                                          completion_tokens=400, cost_usd=0.25),
                                       timings={"analyze": 2.0, "loop": 40.0}), priority="high")
    run(workers_store, a, build_report("failed", turns=[healed[0]], usage=Usage(calls=2, prompt_tokens=500,
                                                                                 completion_tokens=100)))
    run(workers_store, b, state=JobState.failed, error="timed out after 60 s (the job's timeout_s)")
    open_id = run(workers_store, b, state=JobState.running)
    workers_store.request_cancel(workers_store.create("validate", {}, timeout_s=60).id)

    front_one, front_two = SqliteJobStore(db), SqliteJobStore(db)
    one = registry_for(front_one)
    first = scrape(one)
    assert first == scrape(registry_for(front_two))  # another front end on the same store says the same
    assert value(first, "mcp_build_submitted_total", kind="build", priority="normal") == 4
    assert value(first, "mcp_build_requests_total", kind="build", priority="normal", status="succeeded") == 1
    assert value(first, "mcp_build_requests_total", kind="build", priority="high", status="succeeded") == 1
    assert value(first, "mcp_build_requests_total", kind="build", priority="normal", status="failed") == 2
    assert value(first, "mcp_build_requests_total", kind="validate", priority="normal", status="cancelled") == 1
    assert value(first, "mcp_active_builds", kind="build") == 1
    assert value(first, "mcp_queue_depth", kind="build", state="running") == 1
    assert value(first, "mcp_workers_alive") == 2 and value(first, "mcp_worker_slots") == 5
    assert value(first, "mcp_llm_calls_total", kind="build") == 5
    assert value(first, "mcp_llm_tokens_total", kind="build", type="prompt") == 1500
    assert value(first, "mcp_llm_tokens_total", kind="build", type="completion") == 500
    assert value(first, "mcp_llm_cost_usd_total", kind="build") == 0.25
    assert value(first, "mcp_reuse_hits_total", how="exact") == 1
    assert value(first, "mcp_sandbox_runs_total", kind="build", verdict="fail", failure_class="assertion") == 2
    assert value(first, "mcp_sandbox_runs_total", kind="build", verdict="pass", failure_class="none") == 2
    assert value(first, "mcp_build_duration_seconds_count", kind="build", success="false",
                 failure_type="assertion") == 1
    assert value(first, "mcp_build_duration_seconds_count", kind="build", success="false",
                 failure_type="job_timeout") == 1
    assert value(first, "mcp_phase_duration_seconds_sum", kind="build", phase="loop") == 40.0
    assert value(first, "mcp_phase_duration_seconds_count", kind="build", phase="queue") == 4
    assert value(first, "mcp_build_success_rate", kind="build", window="all") == 0.5
    assert value(first, "mcp_build_success_rate", kind="build", window="1h") == 0.5
    # The cancelled validation was never started: no duration, and a cancel is no failure.
    assert ("mcp_build_success_rate", (("kind", "validate"), ("window", "all"))) not in first

    assert workers_store.finish(open_id, JobState.succeeded, result=build_report("built"), worker_id=b.id)
    run(workers_store, a, build_report("reused", reuse="similar (score 0.81)"))
    second = scrape(one)  # the same collector: the job it knew open is folded now, the others not again
    assert second == scrape(registry_for(SqliteJobStore(db)))  # a front end that starts now agrees
    assert value(second, "mcp_build_requests_total", kind="build", priority="normal", status="succeeded") == 3
    assert value(second, "mcp_build_submitted_total", kind="build", priority="normal") == 5
    assert value(second, "mcp_active_builds", kind="build") == 0
    assert value(second, "mcp_reuse_hits_total", how="similar") == 1
    assert value(second, "mcp_llm_calls_total", kind="build") == 5
    assert value(second, "mcp_build_success_rate", kind="build", window="all") == 4 / 6
