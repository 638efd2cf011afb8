"""Whole-sandbox limits, attacked through the real bubblewrap sandbox: disk, memory, processes, CPU, leftovers.

Each containment test is skipped, with the reason, where the machine offers no cgroup of
that kind (or cannot mount a sized tmpfs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from sandbox.limits import cgroups, confined, workspace
from sandbox.limits.workspace import clean_stale, default_parent
from sandbox.policy import safe_env
from sandbox.run import run_sandboxed
from sandbox.spec import Limits, RunSpec

pytestmark = pytest.mark.anyio

PYTHON = sys.executable


def need(controller: str) -> None:
    support = cgroups.detect()
    if controller not in support.bases:
        pytest.skip(f"no {controller} cgroup on this machine: {support.missing.get(controller)}")


def spec_in(path: Path, tmp: Path | None = None, **limits) -> RunSpec:
    return RunSpec(workdir=path, tmp_dir=tmp, readonly_paths=(Path(sys.prefix),), env=safe_env(),
                   limits=Limits(**{"wall_seconds": 30, **limits}))


FILL = """
import os
written = 0
try:
    for n in range(1000):
        where = "/tmp" if n % 2 else "."
        with open(os.path.join(where, f"fill{n}"), "wb") as f:
            f.write(b"x" * (4 * 1024 * 1024))
        written += 4
except OSError as exc:
    print("stopped", written, exc.errno)
else:
    print("unbounded", written)
"""


async def test_disk_fill_stops_at_the_workspace_size_for_work_dir_and_tmp_together(bwrap):
    with workspace(48) as space:
        if not space.limited:
            pytest.skip(space.detail)
        result = await run_sandboxed([PYTHON, "-c", FILL], spec_in(space.workdir, space.tmp, disk_mb=48,
                                                                    file_size_mb=1024), bwrap)
        written = sum(f.stat().st_size for f in space.root.rglob("fill*"))
    words = result.stdout.split()
    assert words[0] == "stopped" and words[2] == "28", result  # ENOSPC
    assert int(words[1]) <= 48 and written <= 48 * 1024 * 1024, (result.stdout, written)
    assert list(space.workdir.parent.parent.glob(space.root.name)) == []  # removed (and unmounted) after use


BOMB = """
import os, sys, time
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(100 * 1024 * 1024)  # written, so every page is really used
        time.sleep(3)
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
print("survived", sum(1 for s in statuses if os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0),
      "killed", sum(1 for s in statuses if os.WIFSIGNALED(s)))
"""


async def test_many_process_memory_bomb_is_bounded_for_the_whole_sandbox(bwrap, workdir):
    need("memory")
    # Each process stays far below its own RLIMIT_AS: only a limit on the sandbox as a whole stops six of them.
    result = await run_sandboxed([PYTHON, "-c", BOMB], spec_in(workdir, memory_mb=1024, sandbox_memory_mb=256),
                                 bwrap)
    words = result.stdout.split()
    assert words[0] == "survived", result
    survived, killed = int(words[1]), int(words[3])
    assert survived * 100 <= 256 and killed >= 4, result.stdout


HOG = """
import os, time
born = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(6)
            os._exit(0)
        born += 1
except OSError:
    print("hog stopped after", born, flush=True)
time.sleep(6)
"""

NEIGHBOUR = """
import os, time
time.sleep(2)  # the hog has used up its own budget by now
born = 0
for _ in range(8):
    try:
        pid = os.fork()
    except OSError as exc:
        print("starved after", born, exc)
        break
    if pid == 0:
        time.sleep(1)
        os._exit(0)
    born += 1
else:
    print("forked", born)
"""


async def test_a_fork_bomb_cannot_starve_another_sandbox_of_processes(bwrap, tmp_path):
    need("pids")
    results = {}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    async def run(name: str, script: str) -> None:
        results[name] = await run_sandboxed([PYTHON, "-c", script], spec_in(tmp_path / name, processes=24), bwrap)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", HOG)
        tg.start_soon(run, "b", NEIGHBOUR)
    assert results["a"].stdout.startswith("hog stopped after"), results["a"]
    assert results["b"].stdout.strip() == "forked 8", results["b"]  # same uid, yet its own budget


async def test_cpu_time_of_the_whole_sandbox_is_capped(bwrap, workdir):
    need("cpu")
    spin = ("import time\nstart, cpu = time.monotonic(), time.process_time()\n"
            "while time.monotonic() - start < 2: pass\n"
            "print(round((time.process_time() - cpu) / (time.monotonic() - start), 2))")
    result = await run_sandboxed([PYTHON, "-c", spin], spec_in(workdir, cpus=0.25), bwrap)
    assert float(result.stdout) <= 0.4, result  # a quarter of a CPU, whatever else the machine does


async def test_what_leaves_the_process_group_is_killed_with_the_sandbox_and_its_cgroup_removed(
        process_backend, workdir, marker, processes_with):
    need("pids")
    escape = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              f"        time.sleep(60)  # {marker}\n    os._exit(0)\ntime.sleep(0.3)\n")
    async with confined(process_backend, spec_in(workdir)) as box:
        group = box.cgroup
        assert group is not None and box.setup_ms < 1000
        await run_sandboxed([PYTHON, "-c", escape], box.spec, process_backend)
    await anyio.sleep(0.2)
    assert processes_with(marker) == []  # a new session, re-parented: only the cgroup still knew it
    assert not any(path.exists() for path in group.dirs.values())


async def test_workspaces_of_a_dead_process_are_cleaned_and_held_ones_kept(tmp_path):
    parent = tmp_path / "spaces"
    parent.mkdir()
    (parent / "sb-1-dead").mkdir()  # no lock file: its owner is gone
    (parent / "sb-1-dead" / "work").mkdir()
    with workspace(16, parent=parent) as held:  # making one cleans what dead processes left
        assert not (parent / "sb-1-dead").exists()
        assert clean_stale(parent) == [] and held.root.is_dir()  # its lock is held: never touched
        (parent / "sb-2-dead").mkdir()
        assert clean_stale(parent) == ["sb-2-dead"] and held.root.is_dir()
    assert sorted(p.name for p in parent.iterdir()) == [".lock"]
    assert default_parent().name.startswith("mcp-foundry-")


def test_the_sandbox_cgroups_together_weigh_one_process_each_on_the_cpu():
    """The directory holding the sandbox cgroups competes for CPU as one entity: with the default weight, every
    sandbox would share a single process's turn. Two sandboxes of ours make it weigh at least two processes."""
    need("cpu")
    support = cgroups.detect()
    name, one, _ = cgroups.CPU_WEIGHT[support.versions["cpu"]]
    weight = support.bases["cpu"] / name
    groups = [cgroups.SandboxCgroup.create(support, memory_mb=64, processes=8, cpus=0.5) for _ in range(2)]
    try:
        during = int(weight.read_text())  # other processes' sandboxes may come and go: at least ours count
        assert during >= 2 * one and during % one == 0, during
    finally:
        for group in groups:
            assert group.remove()
    assert not [g for g in groups if any(path.exists() for path in g.dirs.values())]
