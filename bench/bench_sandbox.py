"""Print sandbox figures: environment creation cold vs warm, and start-to-MCP-initialize latency per backend.

Run: .venv/bin/python bench/bench_sandbox.py [--rounds N]
Cold = a new venv with mcp installed (uv's download cache is warm after the first round,
which is the steady state of a builder); warm = ensure() of a dependency set already built.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from sandbox.backends import get_backend  # noqa: E402
from sandbox.env import EnvManager  # noqa: E402
from sandbox.policy import safe_env  # noqa: E402
from sandbox.spec import Launch, RunSpec  # noqa: E402

REQUIREMENTS = ["mcp==2.3.0"]

SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("bench")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


server.run()
'''


async def bench_envs(root: Path, rounds: int) -> tuple[list[float], list[float], EnvManager]:
    """Seconds per cold build (fresh manager root each round) and per warm hit."""
    # One download cache for every round: this measures venv creation, not the network.
    os.environ["UV_CACHE_DIR"] = str(root / "uv-cache-shared")
    cold, manager = [], None
    for index in range(rounds):
        manager = EnvManager(root / f"cold-{index}")
        started = time.perf_counter()
        env = await manager.ensure(REQUIREMENTS)
        cold.append(time.perf_counter() - started)
        assert env.created
    warm = []
    for _ in range(rounds * 10):
        started = time.perf_counter()
        env = await manager.ensure(REQUIREMENTS)
        warm.append(time.perf_counter() - started)
        assert not env.created
    return cold, warm, manager


async def initialize_once(launch: Launch) -> float:
    """Seconds from spawning the sandboxed server to a finished MCP initialize plus list_tools."""
    started = time.perf_counter()
    params = StdioServerParameters(command=launch.argv[0], args=launch.argv[1:], env=launch.env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        elapsed = time.perf_counter() - started
    assert sorted(t.name for t in tools.tools) == ["add", "shout"], tools
    return elapsed


async def bench_initialize(manager: EnvManager, root: Path, rounds: int) -> dict[str, list[float]]:
    """Start-to-initialize seconds per backend, for the bench server in the built environment."""
    env = await manager.ensure(REQUIREMENTS)
    workdir = root / "work"
    workdir.mkdir()
    (workdir / "server.py").write_text(SERVER)
    spec = RunSpec(workdir=workdir, readonly_paths=(env.path,), env=safe_env())
    figures: dict[str, list[float]] = {}
    for name in ("bubblewrap", "process"):
        backend = get_backend(name)
        launch = backend.launch([str(env.python), str(workdir / "server.py")], spec)
        await initialize_once(launch)  # first start warms the page cache; not counted
        figures[name] = [await initialize_once(launch) for _ in range(rounds * 2)]
    return figures


async def main(rounds: int) -> None:
    """Measure and print."""
    root = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    try:
        cold, warm, manager = await bench_envs(root, rounds)
        cold_ms, warm_ms = statistics.median(cold) * 1000, statistics.median(warm) * 1000
        print(f"env {REQUIREMENTS}: cold median {cold_ms:.0f} ms (n={len(cold)}), "
              f"warm median {warm_ms:.2f} ms (n={len(warm)}), warm is {cold_ms / warm_ms:.0f}x faster")
        figures = await bench_initialize(manager, root, rounds)
        medians = {name: statistics.median(values) * 1000 for name, values in figures.items()}
        for name, value in medians.items():
            print(f"start -> MCP initialize + list_tools under {name}: median {value:.0f} ms (n={len(figures[name])})")
        print(f"bubblewrap / process latency ratio: {medians['bubblewrap'] / medians['process']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold builds (warm hits and starts scale with it)")
    anyio.run(main, parser.parse_args().rounds)
