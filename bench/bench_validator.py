"""Validator wall time for the 5-tool sample server under the default backend, with a warm environment.

Prints the environment build/reuse time, then the median (and min/max) of N full validations
(parse, scan, start in the sandbox, initialize, list, 5 cases, shutdown), and the median
initialize and per-case latency. Usage:

    .venv/bin/python bench/bench_validator.py [--runs 5] [--backend auto] [--env-root DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.backends import get_backend  # noqa: E402
from sandbox.env import EnvManager  # noqa: E402
from sandbox.validate import ValidationTarget, requirements_of, validate_server  # noqa: E402

SERVER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bench_server"


async def main(runs: int, backend_name: str, env_root: Path) -> None:
    backend = get_backend(backend_name)
    manager = EnvManager(env_root)
    t = time.monotonic()
    env = await manager.ensure(requirements_of(SERVER))
    print(f"environment {env.key[:12]} {'built' if env.created else 'reused'} in {time.monotonic() - t:.2f} s")
    target = ValidationTarget(directory=SERVER)
    await validate_server(target, backend=backend, env=env, cases=None)  # warm-up: page cache, bytecode
    totals, inits, calls = [], [], []
    for _ in range(runs):
        t = time.monotonic()
        report = await validate_server(target, backend=backend, env=env, cases=None)
        totals.append(time.monotonic() - t)
        if report.verdict != "pass":
            raise SystemExit(f"bench server failed validation:\n{report.render()}")
        inits.append(next(c.seconds for c in report.checks if c.name == "initialize"))
        calls += [c.latency_ms for c in report.cases]
    print(f"backend: {backend.name}; {len(report.tools)} tools, {len(report.cases)} cases per run, {runs} runs")
    print(f"validator wall time: median {statistics.median(totals):.3f} s "
          f"(min {min(totals):.3f}, max {max(totals):.3f})")
    print(f"initialize (spawn + import + handshake): median {statistics.median(inits):.3f} s")
    print(f"tool call latency: median {statistics.median(calls):.2f} ms over {len(calls)} calls")
    print(f"share of wall time spent before the handshake answered: "
          f"{statistics.median(inits) / statistics.median(totals):.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--env-root", type=Path, default=None, help="keep environments here (default: a temp dir)")
    args = parser.parse_args()
    if args.env_root is not None:
        anyio.run(main, args.runs, args.backend, args.env_root)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-envs-") as tmp:
            anyio.run(main, args.runs, args.backend, Path(tmp))
