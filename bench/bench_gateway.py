"""The gateway's cost: call overhead against a direct stdio call to the same sandboxed server, the cold first call,
and the memory of a warm mounted server.

Deploys the 5-tool sample server (tests/fixtures/bench_server) into a temporary data dir with a real "deploy" job,
then opens two real MCP stdio sessions side by side: one to `mcp-foundry serve` (the gateway, calling
`bench__add`) and one to `mcp-foundry run bench` (the same deployed server in the same sandbox, no gateway).
Calls alternate between the two so that load from elsewhere hits both alike. Prints p50/p95 of each, the overhead
(gateway minus direct) and its ratio; then the cold first call (sandbox start + initialize + the call) after an
idle stop, the resident memory (RSS and PSS) of the warm server's process tree, and that of the process `run`
keeps as the server's supervising parent. Usage:

    .venv/bin/python bench/bench_gateway.py [--calls 500] [--colds 5] [--env-cache DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.config import load_settings  # noqa: E402
from builder.params import deploy_params  # noqa: E402
from builder.service import Foundry  # noqa: E402

SERVER = ROOT / "tests" / "fixtures" / "bench_server"
IDLE_S = 1.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def tree(pid: int) -> list[int]:
    """Every process below `pid` (a process this benchmark started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            children.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over `pids`."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def child_pid(name: str) -> int:
    """The pid of this process's child whose command line contains `name` (the foundry we started)."""
    for pid in tree(os.getpid()):
        try:
            if name in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return pid
        except OSError:
            continue
    raise SystemExit(f"no child process running {name!r}")


async def main(calls: int, colds: int, env_cache: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        data = Path(tmp)
        settings = load_settings({"data_dir": str(data), "env_cache_dir": str(env_cache) if env_cache else None})
        foundry = Foundry(settings)
        t = time.monotonic()
        async with foundry.runner():  # a worker of this process's own
            job = foundry.queue.submit("deploy", deploy_params(str(SERVER), "bench"))
            job = await foundry.queue.wait(job.id, 600)
        if job.state != "succeeded":
            raise SystemExit(f"deploy failed: {job.error}")
        print(f"deployed bench v1 in {time.monotonic() - t:.1f} s (validated in the {foundry.backend.name} sandbox)")

        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FOUNDRY_")}
        env.update(MCP_FOUNDRY_DATA_DIR=str(data), MCP_FOUNDRY_IDLE_TIMEOUT=str(IDLE_S), PYTHONPATH=str(ROOT))
        foundry_cmd = [sys.executable, "-m", "server.cli"]
        gateway = StdioServerParameters(command=foundry_cmd[0], args=[*foundry_cmd[1:], "serve"], env=env, cwd=ROOT)
        direct = StdioServerParameters(command=foundry_cmd[0], args=[*foundry_cmd[1:], "run", "bench"], env=env,
                                       cwd=ROOT)
        async with Client(gateway, mode="legacy", cache=None) as gw:
            t = time.monotonic()
            first = await gw.call_tool("bench__add", {"a": 1, "b": 2})
            first_s = time.monotonic() - t
            assert not first.is_error, first.content
            serve_pid = child_pid("server.cli serve")
            cold: list[float] = []
            for _ in range(colds):
                await anyio.sleep(IDLE_S + 0.7)  # idle past the timeout: the server is stopped
                t = time.monotonic()
                result = await gw.call_tool("bench__add", {"a": 1, "b": 2})
                cold.append(time.monotonic() - t)
                assert not result.is_error, result.content
            async with Client(direct, mode="legacy", cache=None) as dc:
                via, straight = [], []
                for i in range(calls + 50):
                    args = {"a": i, "b": 1}
                    t = time.perf_counter()
                    r1 = await gw.call_tool("bench__add", args)
                    t1 = time.perf_counter()
                    r2 = await dc.call_tool("add", args)
                    t2 = time.perf_counter()
                    assert r1.structured_content == r2.structured_content == {"result": i + 1}
                    if i >= 50:  # the first 50 warm both paths up
                        via.append((t1 - t) * 1000)
                        straight.append((t2 - t1) * 1000)
                server_pids = tree(serve_pid)
                server_rss, server_pss = memory_kib(server_pids)
                serve_rss, serve_pss = memory_kib([serve_pid])
                run_pid = child_pid("server.cli run bench")
                run_rss, run_pss = memory_kib([run_pid])

    over = [a - b for a, b in zip(via, straight, strict=True)]
    print(f"backend: {foundry.backend.name}; {calls} calls of add on each path, alternating, after 50 warm-up calls")
    print(f"direct stdio call (mcp-foundry run bench):   p50 {pct(straight, .5):6.2f} ms   "
          f"p95 {pct(straight, .95):6.2f} ms")
    print(f"through the gateway (serve, bench__add):     p50 {pct(via, .5):6.2f} ms   p95 {pct(via, .95):6.2f} ms")
    print(f"gateway overhead per call:                   p50 {pct(over, .5):6.2f} ms   p95 {pct(over, .95):6.2f} ms"
          f"   (target <= 5 ms p50; ratio of p50s {pct(via, .5) / pct(straight, .5):.2f}x)")
    print(f"cold first call after serve started (sandbox start + initialize + call): {first_s * 1000:.0f} ms")
    print(f"cold call after an idle stop: median {statistics.median(cold) * 1000:.0f} ms "
          f"(min {min(cold) * 1000:.0f}, max {max(cold) * 1000:.0f}, {colds} runs)")
    print(f"warm mounted server ({len(server_pids)} processes in its sandbox tree): RSS {server_rss / 1024:.1f} MiB, "
          f"PSS {server_pss / 1024:.1f} MiB; the serving foundry itself: RSS {serve_rss / 1024:.1f} MiB, "
          f"PSS {serve_pss / 1024:.1f} MiB")
    print(f"`mcp-foundry run bench`'s supervising parent (it holds the sandbox, no byte passes through it): "
          f"RSS {run_rss / 1024:.1f} MiB, PSS {run_pss / 1024:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--colds", type=int, default=5)
    parser.add_argument("--env-cache", type=Path, default=None, help="dependency environments (default: a temp dir "
                        "inside the data dir, built once)")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.colds, args.env_cache)
