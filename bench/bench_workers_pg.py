"""Workers on one PostgreSQL job store: throughput with 1, 2 and 3 workers, and claim latency.

(a) Throughput: 12 validations of tests/fixtures/good_server (warm environment cache) queued at
    once on a fresh database served by N `mcp-foundry worker` processes (one slot each, each its
    own data dir), N = 1, 2, 3. Time from the first enqueue to the last job final; reported as
    jobs/s and as a ratio to one worker. Beside it, the median time one validation took inside
    its worker (finished_at - started_at): when that grows with N, the workers compete for CPU.
(b) Claim latency: enqueue to running (the job's started_at - created_at, both stamped by the
    database clock), one job at a time on idle workers: the worker hears the insert through
    LISTEN/NOTIFY (or its 1 s re-read) and claims it with SKIP LOCKED.

A throwaway cluster is started (initdb + pg_ctl on a free port, as the tests do) and removed.
Usage:

    .venv/bin/python bench/bench_workers_pg.py [--jobs 12] [--latency-rounds 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builder.jobs.postgres import PostgresJobStore  # noqa: E402
from tests.pg import Cluster, find_bin  # noqa: E402

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"
SERVER = REPO / "tests" / "fixtures" / "good_server"


def environ(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_")}
    env.update({"MCP_FOUNDRY_DATA_DIR": str(data_dir), "MCP_FOUNDRY_ENV_CACHE": str(ENV_CACHE),
                "MCP_FOUNDRY_DB_URL": url, "MCP_FOUNDRY_WORKER_IDLE": "0", "MCP_FOUNDRY_MAX_JOBS": "1",
                "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    return env


def start_workers(n: int, url: str, root: Path, store: PostgresJobStore) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], cwd=REPO,
                              env=environ(root / f"w{i}", url), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    while len(store.workers()) < n:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker exited at start; run `mcp-foundry worker` by hand to see why")
        time.sleep(0.1)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)


def run_all(store: PostgresJobStore, n_jobs: int) -> tuple[float, list]:
    t0 = time.monotonic()
    ids = [store.create("validate", {"path": str(SERVER)}, timeout_s=600).id for _ in range(n_jobs)]
    while not all(store.get(i).final for i in ids):
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    jobs = [store.get(i) for i in ids]
    bad = [j for j in jobs if j.state != "succeeded"]
    if bad:
        raise SystemExit(f"{len(bad)} job(s) did not succeed: {bad[0].state} {bad[0].error}")
    return elapsed, jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--latency-rounds", type=int, default=15)
    args = ap.parse_args()
    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (no initdb): bash scripts/setup.sh --test installs it")
    root = Path(tempfile.mkdtemp(prefix="mcpf-bench-pg-"))
    cluster = Cluster(bin_dir, Path(tempfile.mkdtemp(prefix="mcpf-bench-pg-cluster-"))).start()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} at start; PostgreSQL {bin_dir.parent.name} on "
          "127.0.0.1 (fsync off)")
    try:
        base = None
        for n in (1, 2, 3):
            url = cluster.new_database()
            store = PostgresJobStore(url)
            procs = start_workers(n, url, root / f"n{n}", store)
            try:
                run_all(store, n)  # warm: each worker opens its sandbox backend and env once
                elapsed, jobs = run_all(store, args.jobs)
            finally:
                stop(procs)
            per_job = statistics.median(j.finished_at - j.started_at for j in jobs)
            spread = sorted(sum(1 for j in jobs if j.worker == w) for w in {j.worker for j in jobs})
            rate = args.jobs / elapsed
            base = base or rate
            print(f"(a) {n} worker(s): {args.jobs} validations in {elapsed:5.1f} s = {rate:.2f} jobs/s, "
                  f"x{rate / base:.2f} of 1 worker; one validation takes {per_job:.2f} s (median) in its worker; "
                  f"jobs per worker {spread}")
            store.close()
        for n in (1, 3):
            url = cluster.new_database()
            store = PostgresJobStore(url)
            procs = start_workers(n, url, root / f"lat{n}", store)
            lat = []
            try:
                run_all(store, 1)
                for _ in range(args.latency_rounds):
                    time.sleep(0.3)  # idle workers, between polls at a random phase
                    (job,) = run_all(store, 1)[1]
                    lat.append((job.started_at - job.created_at) * 1000)
            finally:
                stop(procs)
            lat.sort()
            print(f"(b) claim latency, enqueue to running, {n} idle worker(s), {len(lat)} jobs: median "
                  f"{statistics.median(lat):.0f} ms, p90 {lat[int(0.9 * (len(lat) - 1))]:.0f} ms, max {lat[-1]:.0f} ms")
            store.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
