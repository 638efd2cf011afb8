"""Worker start on demand, and what starting it costs a stdio front end's handshake.

(a) Cold start to first job running: a front end queues a validation in a fresh data dir
    where no worker runs; the time from queueing to the job's `started_at` (the worker's
    claim) includes starting the worker process. Compared with the same on a warm worker.
(b) Start to `initialize` answered of `mcp-foundry serve` over stdio, in a fresh data dir:
    with the worker it starts in the background (the default), and with `--max-jobs 0`
    (no worker). The ratio shows whether starting the worker slows the handshake.

With `--before DIR` (an earlier commit unpacked, e.g. `git archive COMMIT | tar -x -C DIR`),
(b) also times that version's `serve`, which ran jobs in-process and started no worker.

Every worker started is stopped by the pid its store records. Usage:

    .venv/bin/python bench/bench_worker.py [--rounds 7] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp.client.client import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from builder.config import load_settings  # noqa: E402
from builder.jobs.procs import proc_start  # noqa: E402
from builder.params import validation_params  # noqa: E402
from builder.service import Foundry  # noqa: E402
from server.jobs_cli import WORKER_ARGV  # noqa: E402

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"


def environ(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_")}
    env.update({"MCP_FOUNDRY_DATA_DIR": str(data_dir), "MCP_FOUNDRY_ENV_CACHE": str(ENV_CACHE),
                "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MCP_FOUNDRY_WORKER_IDLE": "30", **extra})
    return env


def stop_workers(foundry: Foundry) -> None:
    """SIGTERM the workers this data dir's store records, and wait until they are gone."""
    for w in foundry.store.workers():
        os.kill(w.pid, signal.SIGTERM)
        while proc_start(w.pid) == w.proc_start:
            time.sleep(0.02)


async def claim_latency(foundry: Foundry) -> float:
    """Seconds from queueing a validation to the worker's claim of it; waits for the job to end."""
    job = foundry.queue.submit("validate", validation_params(None, "true", None, False, 30))
    job = await foundry.queue.wait(job.id, 120)
    assert job.final and job.started_at, job
    return job.started_at - job.created_at


async def bench_claims(rounds: int) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="mcpf-bench-worker-") as d:
            os.environ.update(environ(Path(d)))
            foundry = Foundry(load_settings())
            foundry.start_workers(WORKER_ARGV)
            try:
                cold.append(await claim_latency(foundry))
                warm.append(await claim_latency(foundry))
            finally:
                stop_workers(foundry)
                foundry.store.close()
    return cold, warm


async def handshake(max_jobs: str | None, root: Path = REPO) -> tuple[float, float | None]:
    """Seconds from spawning `serve` in a fresh data dir to its answer to `initialize`, and to its worker's start."""
    with tempfile.TemporaryDirectory(prefix="mcpf-bench-serve-") as d:
        flags = ["--max-jobs", max_jobs] if max_jobs is not None else []
        params = StdioServerParameters(command=sys.executable, args=["-m", "server.cli", *flags, "serve"],
                                       env={**environ(Path(d)), "PYTHONPATH": str(root)}, cwd=str(root))
        t, t_wall = time.perf_counter(), time.time()
        worker_up = None
        async with Client(params):
            seconds = time.perf_counter() - t
            if max_jobs is None:  # the session stays open until the worker it starts has registered
                foundry = Foundry(load_settings({"data_dir": d}))
                with anyio.fail_after(30):
                    while not foundry.store.workers():
                        await anyio.sleep(0.02)
                worker_up = foundry.store.workers()[0].started_at - t_wall
                stop_workers(foundry)
                foundry.store.close()
    return seconds, worker_up


async def bench_handshakes(rounds: int, before: Path | None) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"with": [], "without": [], "worker up": [], "before": []}
    for i in range(rounds):
        if before is not None:
            runs["before"].append((await handshake("1", before))[0])
        # Alternate the order, so that neither side always runs right after the other's worker stopped.
        for max_jobs in ((None, "0") if i % 2 == 0 else ("0", None)):
            seconds, up = await handshake(max_jobs)
            runs["with" if max_jobs is None else "without"].append(seconds)
            if up is not None:
                runs["worker up"].append(up)
    return runs


def figures(name: str, xs: list[float]) -> str:
    return f"{name}: median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


async def main(rounds: int, before: Path | None) -> None:
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {rounds} rounds")
    cold, warm = await bench_claims(rounds)
    print("(a) queued -> running (the worker's claim)")
    print("    " + figures("cold: no worker, started on demand", cold))
    print("    " + figures("warm: worker already running", warm))
    print(f"    ratio cold/warm: {statistics.median(cold) / statistics.median(warm):.1f}x")
    runs = await bench_handshakes(rounds, before)
    with_worker, without = statistics.median(runs["with"]), statistics.median(runs["without"])
    print("(b) stdio `serve` spawned -> initialize answered")
    print("    " + figures("starting its worker (default)", runs["with"]))
    print("    " + figures("--max-jobs 0, no worker", runs["without"]))
    print("    " + figures("(the worker it started was up after)", runs["worker up"]))
    print(f"    ratio with/without worker: {with_worker / without:.2f}")
    if before is not None:
        print("    " + figures(f"before: {before} (jobs in-process, no worker)", runs["before"]))
        print(f"    ratio with worker/before: {with_worker / statistics.median(runs['before']):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier version to time its `serve` too")
    args = parser.parse_args()
    anyio.run(main, args.rounds, args.before)
