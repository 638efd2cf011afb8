"""The durable job store and the worker pool."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest

from builder.errors import InputError
from builder.jobs import JobContext, JobRunner, JobState, JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def test_unknown_job_id_names_the_field(store):
    with pytest.raises(InputError) as e:
        store.get("nope")
    assert e.value.field == "job_id" and "nope" in str(e.value)


def test_state_and_log_survive_reopening(tmp_path, store):
    job = store.create("validate", {"path": "/x"}, 60)
    assert store.claim(job.id)
    store.append_log(job.id, "first")
    store.append_log(job.id, "second")
    store.finish(job.id, JobState.succeeded, result={"ok": True})
    again = JobStore(tmp_path / "jobs.sqlite3")
    got = again.get(job.id)
    assert got.state == "succeeded" and got.result == {"ok": True} and got.progress == 1.0
    assert [line.split(" ", 1)[1] for line in again.log(job.id)] == ["first", "second"]
    assert [line.split(" ", 1)[1] for line in again.log(job.id, tail=1)] == ["second"]


async def _run_jobs(store, handlers, submit, *, max_concurrent=1, after=None):
    async with JobRunner(store, handlers, max_concurrent=max_concurrent, default_timeout_s=30) as runner:
        jobs = [runner.submit(kind, params, timeout_s=t) for kind, params, t in submit]
        if after:
            await after(runner, jobs)
        return [await runner.wait(j.id, 30) for j in jobs]


def test_jobs_run_in_fifo_order_with_progress_and_results(store):
    order = []

    async def work(ctx: JobContext):
        order.append(ctx.params["n"])
        ctx.progress(0.5, "working", "half way")
        ctx.log(f"job {ctx.params['n']}")
        return {"n": ctx.params["n"]}

    jobs = anyio.run(_run_jobs, store, {"w": work}, [("w", {"n": i}, None) for i in range(4)])
    assert order == [0, 1, 2, 3]
    assert [j.state for j in jobs] == ["succeeded"] * 4
    assert [j.result for j in jobs] == [{"n": i} for i in range(4)]
    assert store.log(jobs[2].id)[0].endswith("job 2")


def test_failure_timeout_and_unsuccessful_result_are_recorded(store):
    async def boom(ctx):
        raise ValueError("bad thing")

    async def slow(ctx):
        await anyio.sleep(10)

    async def unhappy(ctx):
        return {"ok": False, "error": "verdict fail"}

    jobs = anyio.run(_run_jobs, store, {"boom": boom, "slow": slow, "unhappy": unhappy},
                     [("boom", {}, None), ("slow", {}, 0.3), ("unhappy", {}, None)], )
    assert jobs[0].state == "failed" and "ValueError: bad thing" in jobs[0].error
    assert jobs[1].state == "failed" and "timed out after 0.3 s" in jobs[1].error
    assert jobs[2].state == "failed" and jobs[2].result == {"ok": False, "error": "verdict fail"}


def test_cancel_stops_a_running_job_and_a_queued_one(store):
    cleaned = []

    async def long(ctx):
        try:
            await anyio.sleep(30)
        finally:
            cleaned.append(ctx.job_id)

    async def cancel_both(runner, jobs):
        while store.get(jobs[0].id).state != "running":
            await anyio.sleep(0.01)
        assert (await runner.cancel(jobs[1].id)).state == "cancelled"  # still queued behind the first
        assert (await runner.cancel(jobs[0].id)).state == "cancelled"
        assert cleaned == [jobs[0].id]  # the handler's cleanup ran before cancel returned

    jobs = anyio.run(lambda: _run_jobs(store, {"l": long}, [("l", {}, None), ("l", {}, None)], after=cancel_both))
    assert [j.state for j in jobs] == ["cancelled", "cancelled"]
    assert cleaned == [jobs[0].id]  # the queued one never started


def test_unknown_kind_is_refused(store):
    async def main():
        async with JobRunner(store, {}, max_concurrent=1) as runner:
            with pytest.raises(InputError, match="unknown job kind"):
                runner.submit("nope", {})

    anyio.run(main)
    assert store.list() == []


def test_running_job_of_a_killed_process_becomes_interrupted(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from builder.jobs import JobStore, JobState
        s = JobStore(Path({str(db)!r}))
        done = s.create("validate", {{}}, 60); s.claim(done.id); s.finish(done.id, JobState.succeeded, result={{"x": 1}})
        run = s.create("validate", {{}}, 60); s.claim(run.id)
        queued = s.create("validate", {{}}, 60)
        print(done.id, run.id, queued.id, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    done, running, queued = p.stdout.readline().split()
    fresh = JobStore(db)
    assert fresh.recover() == ([], [])  # the owner is alive: nothing is taken from it
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    reader = JobStore(db)  # a reader (`status`, build_status) sees the death at once, without a restart
    assert reader.get(running).state == "interrupted"
    assert [j.state for j in reader.list(state="running")] == []
    interrupted, adopted = fresh.recover()
    assert interrupted == [] and adopted == [queued]  # the reader already marked the running one
    assert fresh.get(running).state == "interrupted" and "stopped" in fresh.get(running).error
    assert fresh.get(done).result == {"x": 1} and fresh.get(done).state == "succeeded"


def test_eta_is_estimated_from_progress(store):
    job = store.create("k", {}, 60)
    store.claim(job.id)
    store.update(job.id, progress=0.5, phase="p")
    eta = store.get(job.id).eta_s(now=time.time() + 10)
    assert eta is not None and 9 < eta < 11


def test_higher_priority_jobs_start_first_and_equal_ones_in_arrival_order(store):
    order = []
    gate = anyio.Event()

    async def work(ctx: JobContext):
        if ctx.params["name"] == "first":
            await gate.wait()  # holds the only worker while the others queue up
        order.append(ctx.params["name"])
        return {}

    async def main():
        async with JobRunner(store, {"w": work}, max_concurrent=1) as runner:
            jobs = [runner.submit("w", {"name": "first"})]
            while store.get(jobs[0].id).state != "running":
                await anyio.sleep(0.01)
            for name, priority in (("low", "low"), ("normal-1", "normal"), ("high", "high"), ("normal-2", None)):
                jobs.append(runner.submit("w", {"name": name, **({"priority": priority} if priority else {})}))
            gate.set()
            for job in jobs:
                await runner.wait(job.id, 10)

    anyio.run(main)
    assert order == ["first", "high", "normal-1", "normal-2", "low"]
