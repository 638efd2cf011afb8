"""Jobs through the store: a front end's queue submits and waits, a runner (the worker's pool) claims and runs.

Every test runs on each backend (the `store` fixture: SQLite and PostgreSQL)."""

import re

import anyio
import pytest

from builder.errors import BuildError, InputError
from builder.jobs import JobContext, JobQueue, JobRunner


def queue_for(store, handlers) -> JobQueue:
    return JobQueue(store, handlers, default_timeout_s=30, poll_s=0.02)


async def _run_jobs(store, handlers, submit, *, max_jobs=1, after=None):
    queue = queue_for(store, handlers)
    async with JobRunner(store, handlers, max_jobs=max_jobs, poll_s=0.02):
        jobs = [queue.submit(kind, params, timeout_s=t) for kind, params, t in submit]
        if after:
            await after(queue, jobs)
        return [await queue.wait(j.id, 30) for j in jobs]


async def _until(predicate, timeout=10.0):
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


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
    assert len({j.worker for j in jobs}) == 1 and jobs[0].worker  # the job row names the worker that ran it


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

    async def cancel_both(queue, jobs):
        await _until(lambda: store.get(jobs[0].id).state == "running")
        assert (await queue.cancel(jobs[1].id)).state == "cancelled"  # still queued behind the first
        assert (await queue.cancel(jobs[0].id)).state == "cancelled"
        assert cleaned == [jobs[0].id]  # the handler's cleanup ran before cancel returned

    jobs = anyio.run(lambda: _run_jobs(store, {"l": long}, [("l", {}, None), ("l", {}, None)], after=cancel_both))
    assert [j.state for j in jobs] == ["cancelled", "cancelled"]
    assert cleaned == [jobs[0].id]  # the queued one never started
    assert jobs[1].error == "cancelled before it started" and jobs[0].error == "cancelled by request"


def test_cancel_that_is_not_honoured_in_time_is_a_clear_error(store):
    """A cancel request to a job no live runner stops (its worker stalls) is reported, not silently returned."""
    queue = queue_for(store, ["k"])
    job = queue.submit("k", {})
    worker = store.register_worker(max_jobs=1, lease_s=30)  # this very process: alive, but it never looks
    assert store.claim_next(worker.id, ["k"]).id == job.id

    async def main():
        with pytest.raises(BuildError, match=r"asked to stop but is still running after 0.3 s"):
            await queue.cancel(job.id, wait_s=0.3)

    anyio.run(main)
    assert store.get(job.id).cancel_requested and store.cancel_requests(worker.id) == [job.id]


def test_unknown_kind_and_priority_are_refused(store):
    queue = queue_for(store, ["k"])
    with pytest.raises(InputError, match="unknown job kind"):
        queue.submit("nope", {})
    with pytest.raises(InputError) as e:
        queue.submit("k", {"priority": "urgent"})
    assert e.value.field == "priority" and "low, normal, high" in str(e.value)
    assert store.list() == []


def test_higher_priority_jobs_start_first_and_equal_ones_in_arrival_order(store):
    order = []
    gate = anyio.Event()

    async def work(ctx: JobContext):
        if ctx.params["name"] == "first":
            await gate.wait()  # holds the only slot while the others queue up
        order.append(ctx.params["name"])
        return {}

    async def main():
        queue = queue_for(store, ["w"])
        async with JobRunner(store, {"w": work}, max_jobs=1, poll_s=0.02):
            jobs = [queue.submit("w", {"name": "first"})]
            await _until(lambda: store.get(jobs[0].id).state == "running")
            for name, priority in (("low", "low"), ("normal-1", "normal"), ("high", "high"), ("normal-2", None)):
                jobs.append(queue.submit("w", {"name": name, **({"priority": priority} if priority else {})}))
            gate.set()
            for job in jobs:
                await queue.wait(job.id, 10)

    anyio.run(main)
    assert order == ["first", "high", "normal-1", "normal-2", "low"]


def test_a_released_job_waits_without_a_slot_and_takes_one_back_before_new_jobs(store):
    """released(): the job reads `waiting`, another job runs in its slot, and it resumes ahead of queued work."""
    order: list[str] = []
    answer, b_may_finish = anyio.Event(), anyio.Event()

    async def work(ctx: JobContext):
        name = ctx.params["name"]
        order.append(f"{name} start")
        if name == "a":
            async with ctx.released("waiting for an answer"):
                await answer.wait()
            order.append("a resumed")
        if name == "b":
            await b_may_finish.wait()
        order.append(f"{name} end")
        return {}

    async def main():
        queue = queue_for(store, ["w"])
        async with JobRunner(store, {"w": work}, max_jobs=1, poll_s=0.02) as runner:
            a = queue.submit("w", {"name": "a"})
            await _until(lambda: store.get(a.id).state == "waiting")
            assert store.get(a.id).message == "waiting for an answer"
            b = queue.submit("w", {"name": "b"})
            await _until(lambda: store.get(b.id).state == "running")  # a's slot went to b
            assert sorted(runner.jobs_in_hand) == sorted([a.id, b.id]) and runner.idle_for() == 0
            answer.set()  # a wants its slot back while b holds it, and c arrives
            c = queue.submit("w", {"name": "c"})
            await anyio.sleep(0.2)
            assert store.get(a.id).state == "waiting" and store.get(c.id).state == "queued"
            b_may_finish.set()
            return [await queue.wait(j.id, 10) for j in (a, b, c)]

    jobs = anyio.run(main)
    assert [j.state for j in jobs] == ["succeeded"] * 3
    assert order == ["a start", "b start", "b end", "a resumed", "a end", "c start", "c end"]


def test_a_slot_given_back_goes_to_the_job_taking_its_slot_again_not_to_a_new_claim():
    from builder.jobs.runner import _Slots

    async def main():
        slots = _Slots(1)
        assert slots.take_new()
        async with anyio.create_task_group() as tg:
            tg.start_soon(slots.take_again)
            await anyio.sleep(0.01)  # it waits: no slot is free
            slots.give()
            assert not slots.take_new()  # even before the waiting job has run again, the slot is promised to it
        assert slots.free == 0
        slots.give()
        assert slots.take_new()

    anyio.run(main)


def test_cancel_reaches_a_job_that_waits_released(store):
    cleaned = []

    async def work(ctx: JobContext):
        try:
            async with ctx.released():
                await anyio.sleep(60)
        finally:
            cleaned.append(ctx.job_id)

    async def main():
        queue = queue_for(store, ["w"])
        async with JobRunner(store, {"w": work}, max_jobs=1, poll_s=0.02):
            job = queue.submit("w", {})
            await _until(lambda: store.get(job.id).state == "waiting")
            return await queue.cancel(job.id, wait_s=10)

    job = anyio.run(main)
    assert job.state == "cancelled" and cleaned == [job.id]


def test_wait_calls_back_on_changes_and_on_a_beat_while_nothing_changes(store):
    queue = queue_for(store, ["k"])
    job = queue.submit("k", {})  # no runner: it stays queued, nothing changes
    calls: list[float] = []

    async def main():
        async def seen(j):
            calls.append(anyio.current_time())

        t = anyio.current_time()
        out = await queue.wait(job.id, 0.5, on_change=seen, beat_s=0.1)
        return out, anyio.current_time() - t

    out, elapsed = anyio.run(main)
    assert out.state == "queued" and 0.5 <= elapsed < 1.5
    assert len(calls) >= 3, calls


def test_shutting_the_runner_down_interrupts_its_jobs_and_unregisters_it(store):
    async def forever(ctx):
        await anyio.sleep(60)

    async def main():
        queue = queue_for(store, ["f"])
        async with JobRunner(store, {"f": forever}, max_jobs=1, poll_s=0.02):
            job = queue.submit("f", {})
            await _until(lambda: store.get(job.id).state == "running")
            assert len(store.workers()) == 1 and store.workers()[0].jobs == [job.id]
        return store.get(job.id)

    job = anyio.run(main)
    assert job.state == "interrupted" and "shut down" in job.error
    assert store.workers() == []


def test_time_spent_waiting_released_does_not_count_against_the_jobs_timeout(store):
    """A job's timeout measures its work: the time it waits for an answer outside (released) stops the clock."""
    waited = {}

    async def patient(ctx: JobContext):
        await anyio.sleep(0.3)
        async with ctx.released("waiting for an answer", phase="awaiting_client"):
            assert store.get(ctx.job_id).phase == "awaiting_client"
            await anyio.sleep(1.0)
        await anyio.sleep(0.3)
        waited[ctx.params["n"]] = ctx.waited_s
        return {}

    async def busy(ctx: JobContext):
        ctx.progress(0.1, "working")
        async with ctx.released("waiting"):
            await anyio.sleep(0.5)
        assert store.get(ctx.job_id).phase == "working"  # the phase before the wait is back
        await anyio.sleep(1.0)  # more work than its timeout allows
        return {}

    jobs = anyio.run(_run_jobs, store, {"p": patient, "b": busy}, [("p", {"n": 1}, 0.9), ("b", {}, 0.8)])
    assert jobs[0].state == "succeeded", jobs[0].error  # 0.6 s of work, 1.6 s in all, with a 0.9 s timeout
    assert 0.9 < waited[1] < 2.5  # its answer, then its slot back once the other job ended
    assert jobs[1].state == "failed" and re.search(r"timed out after 0.8 s of work \(and 0\.[5-9] s waiting",
                                                   jobs[1].error), jobs[1].error


def test_a_worker_whose_event_loop_is_held_keeps_renewing_its_lease(store):
    """The lease says the process lives: a step that holds the event loop must not read as death elsewhere."""
    import time

    ages = []

    async def hog(ctx):
        time.sleep(3)  # a synchronous step: nothing else of this event loop runs meanwhile
        me = next(w for w in store.workers() if w.id == ctx.worker_id)
        ages.append(time.time() - me.heartbeat_at)
        return {}

    queue = queue_for(store, {"hog": hog})

    async def main():
        async with JobRunner(store, {"hog": hog}, max_jobs=1, lease_s=1.5, poll_s=0.02):
            job = queue.submit("hog", {})
            return await queue.wait(job.id, 30)

    job = anyio.run(main)
    assert job.state == "succeeded", job.error
    # Renewed every 0.5 s by its own thread: at most about that old, not the 3 s the loop was held.
    assert ages and ages[0] < 1.5, ages
