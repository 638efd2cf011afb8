"""Jobs run in a worker process, not in the front end: over real stdio, real subprocesses, real bubblewrap."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import anyio

from tests.proctree import alive, sandboxed, workers_of
from tests.server.conftest import FIXTURES, FOUNDRY, ROOT, foundry_env, result_of, stdio_foundry


async def _validate(client, name: str) -> str:
    res = await client.call_tool("validate_server", {"path": str(FIXTURES / name)})
    assert not res.is_error, res.content
    return res.structured_content["job_id"]


async def _state(client, job_id: str) -> dict:
    return (await client.call_tool("build_status", {"job_id": job_id})).structured_content


def _log(data_dir) -> str:
    return (data_dir / "logs" / "mcp-foundry.log").read_text()


def test_a_validation_goes_on_after_its_stdio_session_closes(data_dir):
    async def main():
        async with stdio_foundry(data_dir) as client:
            job_id = await _validate(client, "good_server")
        # The session is closed at once; its job is the worker's.
        async with stdio_foundry(data_dir) as client:
            return await result_of(client, job_id)

    out = anyio.run(main)
    assert out["state"] == "succeeded" and out["result"]["report"]["verdict"] == "pass", out


def test_kill_9_of_the_worker_interrupts_its_job_and_the_next_front_end_starts_a_fresh_one(data_dir):
    extra = {"MCP_FOUNDRY_MAX_JOBS": "1", "MCP_FOUNDRY_INIT_TIMEOUT": "60"}

    async def first_life():
        async with stdio_foundry(data_dir, **extra) as client:
            done = await _validate(client, "good_server")
            assert (await result_of(client, done))["state"] == "succeeded"
            running = await _validate(client, "no_init_server")  # never answers: it runs until it is stopped
            queued = await _validate(client, "good_server")  # behind it, in the only slot
            with anyio.fail_after(30):
                while not (workers := workers_of(data_dir)) or not sandboxed(workers[0][0]):
                    await anyio.sleep(0.05)
            assert (await _state(client, queued))["state"] == "queued"
            return done, running, queued, workers[0][0], sandboxed(workers[0][0])

    done, running, queued, worker, sandbox = anyio.run(first_life)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (alive(worker) or any(alive(p) for p in sandbox)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker) and not any(alive(p) for p in sandbox)  # its sandbox died with it

    async def second_life():
        async with stdio_foundry(data_dir, **extra) as client:
            st = await _state(client, running)
            assert st["state"] == "interrupted" and "stopped" in st["error"], st  # at once, no lease to wait out
            res = (await client.call_tool("build_result", {"job_id": done})).structured_content
            assert res["state"] == "succeeded" and res["result"]["report"]["verdict"] == "pass"
            out = await result_of(client, queued)  # the still-queued job runs in a fresh worker
            assert out["state"] == "succeeded", out
            return (await _state(client, queued))["worker"]

    fresh = anyio.run(second_life)
    assert fresh and fresh.rsplit("-", 2)[1] != str(worker)
    assert _log(data_dir).count("started worker pid") == 2


def test_two_front_ends_started_at_once_start_one_worker(data_dir):
    env = foundry_env(data_dir, MCP_FOUNDRY_INIT_TIMEOUT="60")  # three servers start at once on two cores
    clis = [subprocess.Popen([*FOUNDRY, "validate", str(FIXTURES / "good_server"), "--json"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in clis]
    assert [p.returncode for p in clis] == [0, 0, 0], [err for _, err in outs]
    log = _log(data_dir)
    assert log.count("started worker pid") == 1 and log.count(" started: pid ") == 1, log


def test_an_idle_worker_exits_after_its_idle_time(data_dir):
    env = foundry_env(data_dir, MCP_FOUNDRY_WORKER_IDLE="2")
    run = subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "good_server")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    (pid, _), = workers_of(data_dir)
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    assert "stops: idle for 2 s" in _log(data_dir)
    doctor = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "worker:\n  none running; serve, validate, build and library seed start one" in doctor.stdout


def test_with_max_jobs_0_no_worker_starts_and_build_result_holds_a_request_50_s_at_most(data_dir):
    """A front end with --max-jobs 0 only queues; waiting on such a job shows the limit on holding a request."""
    beats: list[float] = []
    values: list[float] = []

    async def progress(value, total, message):
        beats.append(time.monotonic())
        values.append(value)
        assert "no worker runs for this data dir" in message

    async def main():
        async with stdio_foundry(data_dir, MCP_FOUNDRY_MAX_JOBS="0") as client:
            job_id = await _validate(client, "good_server")
            st = await _state(client, job_id)
            assert st["state"] == "queued" and "mcp-foundry worker" in st["note"], st
            status = subprocess.run([*FOUNDRY, "--max-jobs", "0", "status", job_id], cwd=ROOT,
                                    env=foundry_env(data_dir), capture_output=True, text=True, timeout=60)
            assert "queued" in status.stdout and "note: no worker runs for this data dir" in status.stdout
            t = time.monotonic()
            res = await client.call_tool("build_result", {"job_id": job_id, "wait_s": 50}, progress_callback=progress)
            held = time.monotonic() - t
            out = res.structured_content
            assert not out["final"] and out["state"] == "queued" and "wait_s=45" in out["next"]
            cancelled = (await client.call_tool("cancel_build", {"job_id": job_id})).structured_content
            assert cancelled["state"] == "cancelled"  # a queued job needs no worker to be cancelled
            return t, held

    t, held = anyio.run(main)
    assert 45 < held < 50, held
    gaps = [b - a for a, b in zip([t, *beats], [*beats, t + held], strict=True)]
    assert len(beats) >= 5 and max(gaps) < 10, gaps  # progress kept coming while nothing changed
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values  # each above the last, as the protocol asks
    assert workers_of(data_dir) == [] and "started worker" not in _log(data_dir)
    doctor = subprocess.run([*FOUNDRY, "--max-jobs", "0", "doctor"], cwd=ROOT, env=foundry_env(data_dir),
                            capture_output=True, text=True, timeout=60)
    assert "none running; max_jobs is 0, so front ends here start none" in doctor.stdout


def test_ctrl_c_in_the_cli_cancels_its_job_in_the_worker(data_dir):
    # The worker must outlive the checks below even on a loaded machine (the fixture stops it after the test).
    env = foundry_env(data_dir, MCP_FOUNDRY_INIT_TIMEOUT="60", MCP_FOUNDRY_WORKER_IDLE="120")
    cli = subprocess.Popen([*FOUNDRY, "validate", str(FIXTURES / "no_init_server")], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ((workers := workers_of(data_dir)) and sandboxed(workers[0][0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = workers[0][0]
    assert sandboxed(worker), "the server under test never started"
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode != 0
    job_id = re.search(r"job (\w+) \(validate\)", err).group(1)
    status = subprocess.run([*FOUNDRY, "status", job_id], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "cancelled" in status.stdout, status.stdout
    deadline = time.monotonic() + 5
    while sandboxed(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sandboxed(worker) and alive(worker)  # the job is gone, the worker stays for the next one
    second = subprocess.run([*FOUNDRY, "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and f"a worker already runs for {data_dir} (pid {worker})" in second.stderr
    empty = subprocess.run([*FOUNDRY, "--max-jobs", "0", "worker"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    assert empty.returncode == 2 and "--max-jobs" in empty.stderr and "at least one slot" in empty.stderr


def test_a_build_uses_the_model_of_the_front_end_that_queued_it_not_the_workers(data_dir):
    """A worker started by a shell with no model still builds with the model of the client that asks."""
    from tests.builder.fake_openai import FakeOpenAI

    shell = foundry_env(data_dir, MCP_FOUNDRY_WORKER_IDLE="120")  # no MCP_FOUNDRY_LLM_* at all
    done = subprocess.run([*FOUNDRY, "validate", str(FIXTURES / "good_server")], cwd=ROOT, env=shell,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (worker, _), = workers_of(data_dir)  # the shell's worker, still idle-waiting for work
    llm = FakeOpenAI().start()
    llm.script(["this is not a requirement"] * 3)  # any answer will do: what matters is who is asked
    base_url = llm.base_url
    model = {"MCP_FOUNDRY_LLM_BASE_URL": base_url, "MCP_FOUNDRY_LLM_MODEL": "scripted"}

    async def main() -> dict:
        async with stdio_foundry(data_dir, **model) as client:
            ticket = await client.call_tool("request_build", {"description": "reverse the words of a sentence",
                                                              "coder": "server", "fresh": True})
            assert not ticket.is_error, ticket.content
            return await result_of(client, ticket.structured_content["job_id"])

    try:
        out = anyio.run(main)
    finally:
        llm.stop()
    assert [w for w, _ in workers_of(data_dir)] == [worker]  # the same worker ran it
    assert llm.calls >= 1, out  # it asked the client's model, not "no model is configured"
    assert out["state"] == "failed" and "no LLM provider is configured" not in (out["error"] or ""), out
    stored = subprocess.run([*FOUNDRY, "status", out["job_id"], "--json"], cwd=ROOT, env=shell, capture_output=True,
                            text=True, timeout=60)
    # the job recorded the client's model for the worker, never a key
    assert '"base_url": "' + base_url in stored.stdout and '"api_key_set": false' in stored.stdout, stored.stdout
