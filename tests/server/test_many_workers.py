"""Many workers over one real PostgreSQL: three `mcp-foundry worker` processes, each with its own data dir, and
front ends that only enqueue (`--max-jobs 0`). One worker runs in its own UTS namespace under another host name,
so the others can only tell it is alive by its lease, as for a worker on another machine.

The tests share the fleet and run in order: the kill -9 test comes last.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import anyio
import psycopg
import pytest

from builder.jobs.postgres import PostgresJobStore
from tests.proctree import alive, sandboxed
from tests.server.conftest import FIXTURES, FOUNDRY, ROOT, foundry_env, result_of, stdio_foundry

LEASE_S = 3.0


class Fleet:
    """Workers started by this test module on one job store, stopped by their pids at the end."""

    def __init__(self, url: str, root: Path):
        self.url, self.root = url, root
        self.procs: dict[str, subprocess.Popen] = {}
        self.killed: set[str] = set()
        """Workers a test killed on purpose."""
        self.store = PostgresJobStore(url)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        return foundry_env(self.root / name, MCP_FOUNDRY_DB_URL=self.url, MCP_FOUNDRY_WORKER_LEASE=f"{LEASE_S:g}",
                           MCP_FOUNDRY_WORKER_IDLE="0", MCP_FOUNDRY_MAX_JOBS="1", MCP_FOUNDRY_INIT_TIMEOUT="90",
                           **extra)

    def start(self, name: str, *, elsewhere: bool = False) -> None:
        argv = [*FOUNDRY, "worker"]
        if elsewhere:  # another host name in a UTS namespace of its own: a machine whose pids we may not check
            argv = ["unshare", "--uts", "sh", "-c", f'hostname {name}-elsewhere && exec "$@"', "sh", *argv]
        (self.root / name).mkdir(parents=True, exist_ok=True)
        self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env(name), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=open(self.root / f"{name}.stderr", "w"))  # noqa: SIM115

    def wait_registered(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while len(self.store.workers()) < n:
            dead = {k: p.returncode for k, p in self.procs.items() if k not in self.killed and p.poll() is not None}
            assert not dead and time.monotonic() < deadline, (dead, self.stderr())
            time.sleep(0.1)

    def pid_of(self, worker_id: str) -> int:
        return int(worker_id.rsplit("-", 2)[1])

    def name_of(self, worker_id: str) -> str:
        pid = self.pid_of(worker_id)
        return next(k for k, p in self.procs.items() if p.pid == pid)

    def started_lines(self) -> list[str]:
        """Every "[kind id] started" line of every worker's log: one per job run."""
        found = []
        for name in self.procs:
            log = self.root / name / "logs" / "mcp-foundry.log"
            if log.exists():
                found += re.findall(r"\[validate (\w+)\] started", log.read_text())
        return found

    def stderr(self) -> str:
        return "\n".join(f"{n}: {(self.root / f'{n}.stderr').read_text()[-2000:]}" for n in self.procs)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.store.close()


@pytest.fixture(scope="module")
def fleet(pg_cluster, tmp_path_factory):
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a UTS namespace here (needs root or user namespaces): no worker 'elsewhere'")
    f = Fleet(pg_cluster.new_database(), tmp_path_factory.mktemp("fleet"))
    for name in ("a", "b"):
        f.start(name)
    f.start("c", elsewhere=True)
    try:
        f.wait_registered(3)
        yield f
    finally:
        f.stop()


def front_end(fleet: Fleet, name: str = "front"):
    """`mcp-foundry serve` over stdio on the shared store, starting no worker of its own."""
    return stdio_foundry(fleet.root / name, MCP_FOUNDRY_DB_URL=fleet.url, MCP_FOUNDRY_MAX_JOBS="0")


async def _validate(client, name: str) -> str:
    res = await client.call_tool("validate_server", {"path": str(FIXTURES / name)})
    assert not res.is_error, res.content
    return res.structured_content["job_id"]


def test_twenty_jobs_finish_exactly_once_spread_over_the_workers(fleet):
    async def main():
        async with front_end(fleet) as client:
            ids = [await _validate(client, "good_server") for _ in range(20)]
            return ids, [await result_of(client, job_id) for job_id in ids]

    ids, outs = anyio.run(main)
    assert [o["state"] for o in outs] == ["succeeded"] * 20, [o.get("error") for o in outs]
    assert all(o["result"]["report"]["verdict"] == "pass" for o in outs)
    jobs = [fleet.store.get(job_id) for job_id in ids]
    by_worker = {fleet.name_of(j.worker) for j in jobs}
    assert by_worker == {"a", "b", "c"}, [j.worker for j in jobs]  # all three took part, "elsewhere" too
    started = fleet.started_lines()
    assert sorted(started) == sorted(ids)  # each job started once, on one worker: never twice
    assert fleet.store.list(state="queued") == []


def test_a_cancel_sent_through_a_front_end_stops_the_job_on_the_worker_running_it(fleet):
    async def main():
        async with front_end(fleet, "front2") as client:
            job_id = await _validate(client, "no_init_server")  # never answers: it runs until it is stopped
            with anyio.fail_after(60):
                while not (job := fleet.store.get(job_id)).worker or not sandboxed(fleet.pid_of(job.worker)):
                    await anyio.sleep(0.05)
            res = await client.call_tool("cancel_build", {"job_id": job_id})
            assert not res.is_error, res.content
            return job, res.structured_content

    job, out = anyio.run(main)
    assert out["state"] == "cancelled", out
    pid = fleet.pid_of(job.worker)
    deadline = time.monotonic() + 10
    while sandboxed(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sandboxed(pid) and alive(pid)  # its server under test is gone; the worker stays
    assert fleet.store.get(job.id).error == "cancelled by request"


def test_kill_9_of_a_worker_elsewhere_interrupts_its_job_within_the_lease_and_the_others_carry_on(fleet):
    long = [fleet.store.create("validate", {"path": str(FIXTURES / "no_init_server")}, timeout_s=300)
            for _ in range(3)]  # one per worker: each has one slot
    deadline = time.monotonic() + 60
    while {fleet.name_of(w) for j in long if (w := fleet.store.get(j.id).worker)} != {"a", "b", "c"}:
        assert time.monotonic() < deadline, [fleet.store.get(j.id) for j in long]
        time.sleep(0.05)
    held = {fleet.name_of(fleet.store.get(j.id).worker): j.id for j in long}
    victim = fleet.procs["c"]
    fleet.killed.add("c")
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    # Read the state column itself: the surviving workers, not this reader, must find the death (by the lease).
    with psycopg.connect(fleet.url) as conn:
        def state() -> str:
            return conn.execute("SELECT state FROM mcp_foundry.jobs WHERE id = %s", (held["c"],)).fetchone()[0]

        while (now := state()) == "running" and time.monotonic() - killed_at < LEASE_S + 10:
            time.sleep(0.05)
        took = time.monotonic() - killed_at
    # Its last heartbeat was at most a third of a lease before the kill, and the others reap every third of one:
    # found dead after its lease ran out (not at once, as a pid check would), and within a lease and a third.
    assert now == "interrupted" and LEASE_S * 2 / 3 - 0.2 < took < LEASE_S * 4 / 3 + 1, (now, took)
    assert "stopped before it finished" in fleet.store.get(held["c"]).error
    # The others carry on: their jobs are still theirs, and new work is done by them.
    assert [fleet.store.get(held[n]).state for n in ("a", "b")] == ["running", "running"]
    for n in ("a", "b"):
        fleet.store.request_cancel(held[n])
    after = [fleet.store.create("validate", {"path": str(FIXTURES / "good_server")}, timeout_s=300)
             for _ in range(2)]
    deadline = time.monotonic() + 120
    while not all((j := fleet.store.get(a.id)).final for a in after):
        assert time.monotonic() < deadline, j
        time.sleep(0.1)
    done = [fleet.store.get(a.id) for a in after]
    assert [j.state for j in done] == ["succeeded", "succeeded"] and {fleet.name_of(j.worker) for j in done} <= {"a", "b"}
    assert [fleet.store.get(held[n]).state for n in ("a", "b")] == ["cancelled", "cancelled"]
    assert [w.id for w in fleet.store.workers() if fleet.pid_of(w.id) == victim.pid] == []


def test_doctor_shows_the_shared_store_masked_and_its_workers_and_a_second_worker_may_share_a_data_dir(fleet):
    # A second worker in worker a's data dir: on a shared store there is no one-worker-per-data-dir lock.
    env = {**fleet.env("a"), "MCP_FOUNDRY_DB_URL": fleet.url.replace("postgres@", "postgres:hunter2@")}
    before = len(fleet.store.workers())
    second = subprocess.Popen([*FOUNDRY, "worker"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        fleet.wait_registered(before + 1)
        doctor = subprocess.run([*FOUNDRY, "--max-jobs", "0", "doctor"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert doctor.returncode == 0, doctor.stderr
        assert "job store: PostgreSQL postgresql://postgres:***@127.0.0.1" in doctor.stdout
        assert "hunter2" not in doctor.stdout + doctor.stderr
        listed = re.findall(r"^  (\S+): pid (\d+) on .* lease 3 s", doctor.stdout, re.M)
        assert {int(pid) for _, pid in listed} >= {second.pid, fleet.procs["a"].pid, fleet.procs["b"].pid}
        assert second.poll() is None  # not refused
    finally:
        second.terminate()
        second.wait(15)
