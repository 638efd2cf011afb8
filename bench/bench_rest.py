"""The REST and WebSocket face under load, against a real `mcp-foundry serve --http` on 127.0.0.1.

The bench plays the worker: it registers in the job store of the server's data dir, claims
a job and writes to it through the JobStore protocol, as a worker on any machine would. The
server starts no worker of its own (`--max-jobs 0`).

(a) WebSocket event latency: from a log line appended to the store to its `log` message
    arriving at a client of /api/v1/build/{id}/ws; one socket, then 20 on the same job.
(b) REST status latency under load: 50 concurrent pollers of /api/v1/build/{id}/status
    (each asks again as soon as it has an answer) for a fixed time, while the job logs a
    line and moves its progress every 100 ms; compared with one poller alone, and with the
    same pollers against a bare Starlette route under uvicorn that answers a fixed status
    body (the floor of the HTTP stack on this machine, at this moment).

Both ends share the machine's cores: the pollers are Python too. Usage:

    .venv/bin/python bench/bench_rest.py [--lines 200] [--seconds 10] [--pollers 50]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builder.jobs import SqliteJobStore  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_")}
    env.update({"MCP_FOUNDRY_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "server.cli", "--max-jobs", "0", "serve", "--http",
                          f"127.0.0.1:{port}", "--no-mount"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return p, base
        except httpx.TransportError:
            if p.poll() is not None:
                raise SystemExit(p.stderr.read().decode() if p.stderr else "serve exited") from None
            time.sleep(0.05)
    p.kill()
    raise SystemExit("serve did not answer within 60 s")


BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
body = sys.stdin.buffer.read()
async def status(request):
    return Response(body, media_type="application/json")
app = Starlette(routes=[Route("/api/v1/build/{build_id}/status", status), Route("/healthz", status)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def start_bare(body: bytes) -> tuple[subprocess.Popen, str]:
    """A bare Starlette app under uvicorn answering `body` at the status path: the floor to compare with."""
    port = free_port()
    p = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], stdin=subprocess.PIPE)
    assert p.stdin is not None
    p.stdin.write(body)
    p.stdin.close()
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return p, base
        except httpx.TransportError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("the bare app did not answer")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:6.1f} ms  p95 {pct(values, 0.95) * 1000:6.1f} ms  "
            f"max {max(values) * 1000:6.1f} ms  (n={len(values)})")


async def ws_latency(base: str, store: SqliteJobStore, job_id: str, lines: int, sockets: int) -> list[float]:
    """Latency of each appended line to each socket (`sockets` clients on the same job)."""
    url = base.replace("http://", "ws://") + f"/api/v1/build/{job_id}/ws"
    seen: list[float] = []
    sent: dict[str, float] = {}
    received = [0] * sockets

    async def client(i: int, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        async with connect(url, max_queue=None) as ws:
            task_status.started()
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "log" and msg["data"]["line"].split(" ", 1)[1] in sent:
                    seen.append(time.time() - sent[msg["data"]["line"].split(" ", 1)[1]])
                    received[i] += 1
                    if received[i] == lines:
                        return

    async with anyio.create_task_group() as tg:
        for i in range(sockets):
            await tg.start(client, i)
        await anyio.sleep(0.5)  # every socket has read the job once and is waiting for a change
        for n in range(lines):
            text = f"bench line {sockets}-{n}"
            sent[text] = time.time()
            store.append_log(job_id, text)
            await anyio.sleep(0.02 + (n % 7) * 0.003)  # spread over the poll interval's phases
    return seen


async def pollers(base: str, store: SqliteJobStore, job_id: str, worker_id: str, n: int,
                  seconds: float) -> tuple[list[float], int]:
    """Each of `n` pollers asks for the status again as soon as it has an answer, for `seconds`."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        deadline = time.monotonic() + seconds

        async def poll() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t = time.perf_counter()
                r = await http.get(f"/api/v1/build/{job_id}/status")
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        async def work() -> None:
            step = 0
            while time.monotonic() < deadline:
                step += 1
                store.append_log(job_id, f"bench step {step}")
                store.update(job_id, worker_id, progress=min(0.99, step / 1000), phase="bench", message=f"step {step}")
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            for _ in range(n):
                tg.start_soon(poll)
    return latencies, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200, help="log lines timed per WebSocket round")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each polling round")
    ap.add_argument("--pollers", type=int, default=50, help="concurrent pollers in the loaded round")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        data_dir = Path(tmp)
        server, base = start_server(data_dir)
        try:
            store = SqliteJobStore(data_dir / "jobs.sqlite3")
            worker = store.register_worker(max_jobs=1, lease_s=60)
            job = store.create("validate", {"path": "/bench"}, timeout_s=3600)
            assert store.claim_next(worker.id, ["validate"]) is not None
            print(f"serve --http at {base}, one job held by the bench as worker {worker.id}")

            print("(a) WebSocket event latency, log line appended to the store -> message at the client")
            one = anyio.run(ws_latency, base, store, job.id, args.lines, 1)
            print(f"    1 socket:   {ms(one)}")
            many = anyio.run(ws_latency, base, store, job.id, args.lines, 20)
            print(f"    20 sockets: {ms(many)}")
            print(f"    ratio of medians, 20 sockets / 1: {statistics.median(many) / statistics.median(one):.2f}")

            print(f"(b) GET /api/v1/build/{{id}}/status while the job logs and moves every 100 ms, "
                  f"{args.seconds:g} s per round")
            alone, bad_alone = anyio.run(pollers, base, store, job.id, worker.id, 1, args.seconds)
            print(f"    1 poller:   {ms(alone)}  {len(alone) / args.seconds:6.0f} req/s  errors {bad_alone}")
            loaded, bad = anyio.run(pollers, base, store, job.id, worker.id, args.pollers, args.seconds)
            print(f"    {args.pollers} pollers: {ms(loaded)}  {len(loaded) / args.seconds:6.0f} req/s  errors {bad}")
            print(f"    p95 ratio, {args.pollers} pollers / 1: {pct(loaded, 0.95) / pct(alone, 0.95):.1f}; "
                  f"throughput ratio: {len(loaded) / max(1, len(alone)):.2f}")
            bare, bare_base = start_bare(httpx.get(f"{base}/api/v1/build/{job.id}/status").content)
            try:
                floor, _ = anyio.run(pollers, bare_base, store, job.id, worker.id, args.pollers, args.seconds)
            finally:
                bare.terminate()
                bare.wait(10)
            print(f"    bare Starlette, {args.pollers} pollers: {ms(floor)}  {len(floor) / args.seconds:6.0f} req/s")
            print(f"    p95 ratio, status / bare route: {pct(loaded, 0.95) / pct(floor, 0.95):.2f}; "
                  f"throughput ratio: {len(loaded) / max(1, len(floor)):.2f}")
            store.finish(job.id, "cancelled", error="bench over", worker_id=worker.id)
            store.unregister_worker(worker.id)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
