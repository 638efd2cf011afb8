"""Print what per-sandbox limits cost at each sandbox start: cgroup set-up and removal, the tmpfs workspace.

Run: .venv/bin/python bench/bench_limits.py [--rounds N]
Figures are medians over N rounds (default 30): the cgroup made with its limits and
removed again (sandbox.limits.cgroups), a tmpfs workspace mounted and removed
(sandbox.limits.workspace), and a whole `true` run in bubblewrap with cgroups on against
the same run with them off, so the start-up cost they add is seen end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox.backends import get_backend  # noqa: E402
from sandbox.limits import cgroups, workspace  # noqa: E402
from sandbox.limits.cgroups import SandboxCgroup  # noqa: E402
from sandbox.policy import safe_env  # noqa: E402
from sandbox.run import run_sandboxed  # noqa: E402
from sandbox.spec import Limits, RunSpec  # noqa: E402


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def bench_cgroup(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds to make a sandbox cgroup with its limits, and to empty and remove it."""
    support = cgroups.detect()
    made, removed = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        group = SandboxCgroup.create(support, memory_mb=1024, processes=64, cpus=1.0)
        made.append(time.perf_counter() - started)
        started = time.perf_counter()
        group.remove()
        removed.append(time.perf_counter() - started)
    return made, removed


def bench_workspace(rounds: int) -> tuple[list[float], bool]:
    """Seconds to make (mount) and remove (unmount) a 512 MiB workspace."""
    spent, limited = [], False
    for _ in range(rounds):
        started = time.perf_counter()
        with workspace(512, prefix="bench") as space:
            limited = space.limited
        spent.append(time.perf_counter() - started)
    return spent, limited


async def bench_runs(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds for `true` in the default backend, cgroups on and off, interleaved so load hits both alike."""
    backend = get_backend()
    on, off = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for use, sink in ((True, on), (False, off)):
                spec = RunSpec(workdir=Path(tmp), env=safe_env(), limits=Limits(wall_seconds=30, cgroups=use))
                started = time.perf_counter()
                result = await run_sandboxed(["true"], spec, backend)
                sink.append(time.perf_counter() - started)
                assert result.returncode == 0, result
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    support = cgroups.detect()
    print(f"cgroups here: {', '.join(support.describe(c) for c in cgroups.CONTROLLERS)}")
    if support.bases:
        made, removed = bench_cgroup(rounds)
        print(f"cgroup set-up per sandbox start:   median {median_ms(made):6.2f} ms (max {max(made) * 1000:.2f})")
        print(f"cgroup removal per sandbox end:    median {median_ms(removed):6.2f} ms "
              f"(max {max(removed) * 1000:.2f})")
    spent, limited = bench_workspace(rounds)
    print(f"workspace make+remove ({'tmpfs' if limited else 'plain dir'}):  median {median_ms(spent):6.2f} ms")
    on, off = anyio.run(bench_runs, rounds)
    print(f"`true` in the sandbox, cgroups on:  median {median_ms(on):6.1f} ms")
    print(f"`true` in the sandbox, cgroups off: median {median_ms(off):6.1f} ms")
    print(f"added by cgroups end to end:       {median_ms(on) - median_ms(off):+6.1f} ms "
          f"(ratio {statistics.median(on) / statistics.median(off):.2f})")


if __name__ == "__main__":
    main()
