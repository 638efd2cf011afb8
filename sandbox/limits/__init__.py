"""Limits of a whole sandbox, beyond each process's rlimits: its disk, its memory, its processes, its CPU.

Two pieces, both used through RunSpec so that every backend and every caller (the
validator, `run_sandboxed`, the gateway) gets them the same way:

- `workspace(disk_mb)`: the work dir and /tmp on one size-limited tmpfs, locked while in
  use, cleaned after a crash (RunSpec.workdir, RunSpec.tmp_dir);
- `confined(backend, spec)`: a cgroup per sandbox with memory, pids and CPU limits that
  the sandbox joins before anything in it runs (RunSpec.cgroup_procs), removed after.

Each reports what is in force as LimitStates, which go into the validation report and
`doctor`, so that a sandbox without a limit says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
from pydantic import BaseModel

from sandbox.limits import cgroups
from sandbox.limits.cgroups import SandboxCgroup
from sandbox.limits.workspace import Workspace, default_parent, workspace
from sandbox.spec import Limits, RunSpec

if TYPE_CHECKING:
    from sandbox.backends.base import Backend

__all__ = ["Confined", "LimitState", "Workspace", "clean_stale", "confined", "disk_state", "expected_states",
           "workspace"]

_NAMES = {"memory": "memory", "pids": "processes", "cpu": "cpu"}


class LimitState(BaseModel):
    """Whether one whole-sandbox limit is in force, and what enforces it (or why nothing does)."""

    name: Literal["disk", "memory", "processes", "cpu"]
    in_force: bool
    detail: str


@dataclass
class Confined:
    """A sandbox's spec with its cgroups joined, what is in force, and its cgroup (None without one)."""

    spec: RunSpec
    states: list[LimitState] = field(default_factory=list)
    cgroup: SandboxCgroup | None = None
    setup_ms: float = 0.0
    """Time spent making the cgroups."""


def _cgroup_detail(controller: str, limits: Limits, version: int) -> str:
    value = {"memory": f"{limits.sandbox_memory_mb} MiB", "pids": f"{limits.processes} processes/threads",
             "cpu": f"{limits.cpus:g} CPU"}[controller]
    return f"{value} for the whole sandbox (cgroup v{version})"


def _fallback_detail(controller: str, limits: Limits, why: str) -> str:
    per_process = {"memory": f"only RLIMIT_AS of {limits.memory_mb} MiB per process applies",
                   "pids": f"only RLIMIT_NPROC of {limits.processes} applies, shared by every sandbox of the same uid",
                   "cpu": f"only RLIMIT_CPU of {limits.cpu_seconds} s per process applies"}[controller]
    return f"not limited per sandbox ({why}); {per_process}"


def _states(backend: Backend, limits: Limits, group: SandboxCgroup | None,
            support: cgroups.CgroupSupport | None) -> list[LimitState]:
    if getattr(backend, "confines_itself", False):
        return [LimitState(name=_NAMES[c], in_force=True, detail=f"{backend.name} applies it to the container")
                for c in cgroups.CONTROLLERS]
    states = []
    for controller in cgroups.CONTROLLERS:
        if group is not None and controller in group.dirs:
            states.append(LimitState(name=_NAMES[controller], in_force=True,
                                     detail=_cgroup_detail(controller, limits, group.versions[controller])))
        else:
            why = ("cgroups are turned off (MCP_FOUNDRY_SANDBOX_CGROUPS=off)" if not limits.cgroups
                   else (support.missing.get(controller, "no cgroup") if support else "no cgroup"))
            states.append(LimitState(name=_NAMES[controller], in_force=False,
                                     detail=_fallback_detail(controller, limits, why)))
    return states


def disk_state(space: Workspace | None, limits: Limits) -> LimitState:
    """The disk limit of a sandbox that uses `space` (None: a work dir the caller made, not size-limited)."""
    if space is None:
        return LimitState(name="disk", in_force=False, detail=f"work dir not size-limited; only the per-file size "
                          f"limit of {limits.file_size_mb} MiB applies")
    return LimitState(name="disk", in_force=space.limited, detail=space.detail)


@asynccontextmanager
async def confined(backend: Backend, spec: RunSpec) -> AsyncIterator[Confined]:
    """A cgroup for one sandbox around its run: `spec` comes back with the cgroups to join (see Confined).

    The cgroup is emptied (every process in it killed) and removed on exit, even when
    the caller is cancelled. Backends that confine each run themselves (Docker) get
    none. Raises SandboxError when a cgroup that should work cannot be set up.
    """
    limits = spec.limits
    support = cgroups.detect() if limits.cgroups and not getattr(backend, "confines_itself", False) else None
    group = None
    started = time.perf_counter()
    if support is not None and support.bases:
        cgroups.clean_stale(support)
        group = SandboxCgroup.create(support, memory_mb=limits.sandbox_memory_mb, processes=limits.processes,
                                     cpus=limits.cpus)
    setup_ms = (time.perf_counter() - started) * 1000
    joined = spec if group is None else spec.model_copy(
        update={"cgroup_procs": group.procs_files, "cgroup_controllers": tuple(group.dirs)})
    try:
        yield Confined(spec=joined, states=_states(backend, limits, group, support), cgroup=group, setup_ms=setup_ms)
    finally:
        if group is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(group.remove)


def expected_states(backend: Backend, limits: Limits) -> list[LimitState]:
    """What a sandbox made now with `limits` would have in force (for `doctor`); nothing is created."""
    support = cgroups.detect() if limits.cgroups and not getattr(backend, "confines_itself", False) else None
    root = os.geteuid() == 0
    disk = LimitState(name="disk", in_force=root, detail=(
        f"work dir and /tmp share a tmpfs of {limits.disk_mb} MiB" if root else
        f"work dir not size-limited (mounting a tmpfs needs root); only the per-file size limit of "
        f"{limits.file_size_mb} MiB applies"))
    named = SandboxCgroup(support, "doctor") if support is not None and support.bases else None  # names only
    return [disk, *_states(backend, limits, named, support)]


def clean_stale(parent: Path | None = None) -> dict[str, list[str]]:
    """Remove what sandboxes of dead mcp-foundry processes left: workspaces (mounts included) and cgroups."""
    from sandbox.limits.workspace import clean_stale as clean_workspaces

    return {"workspaces": clean_workspaces(parent or default_parent()), "cgroups": cgroups.clean_stale()}
