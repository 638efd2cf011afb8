"""What a sandboxed run is allowed to do: limits and the run specification handed to a backend."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Resource limits of one sandbox: rlimits per process, a wall-clock timeout, and limits of the whole sandbox.

    The whole-sandbox limits (memory, processes, CPU) come from a cgroup per sandbox
    where the machine offers one (see sandbox.limits), the disk limit from a tmpfs work
    dir; where they are not in force the validation report says so.
    """

    model_config = ConfigDict(frozen=True)

    cpu_seconds: int = Field(60, ge=1, le=3600, description="RLIMIT_CPU: CPU seconds per process.")
    memory_mb: int = Field(1024, ge=64, le=65536, description="RLIMIT_AS: address space per process, MiB.")
    processes: int = Field(64, ge=1, le=4096, description="Processes and threads of the whole sandbox (a pids "
                           "cgroup; without one, RLIMIT_NPROC of the uid it runs as).")
    file_size_mb: int = Field(64, ge=1, le=65536, description="RLIMIT_FSIZE: largest file a process may write, MiB.")
    wall_seconds: float = Field(120, gt=0, le=86400, description="Wall-clock timeout for the whole run.")
    disk_mb: int = Field(512, ge=8, le=1048576, description="The work dir and /tmp together, MiB (a tmpfs).")
    sandbox_memory_mb: int = Field(1024, ge=32, le=1048576, description="Memory of the whole sandbox, MiB: every "
                                   "process, and what it writes to its tmpfs (a memory cgroup).")
    cpus: float = Field(1.0, gt=0, le=1024, description="CPU time of the whole sandbox, in CPUs (a CPU cgroup quota).")
    cgroups: bool = Field(True, description="Put each sandbox in a cgroup of its own where the machine allows it.")


class RunSpec(BaseModel):
    """Everything a backend needs to run one command in isolation.

    `workdir` is the only writable place; `readonly_paths` (an environment, a source
    tree) are visible read-only at the same absolute path; `env` is passed as is, so
    build it with `sandbox.policy.safe_env` so that no builder secret leaks in.
    """

    model_config = ConfigDict(frozen=True)

    workdir: Path
    readonly_paths: tuple[Path, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    network: bool = False
    limits: Limits = Field(default_factory=Limits)
    tmp_dir: Path | None = None
    """A host dir shown as /tmp (a workspace's, sharing the work dir's size limit); None: a private tmpfs of
    limits.disk_mb where the backend can size one."""
    cgroup_procs: tuple[Path, ...] = ()
    """cgroup.procs files the sandbox joins before anything in it runs (set by sandbox.limits.confined)."""
    cgroup_controllers: tuple[str, ...] = ()
    """The controllers those cgroups enforce ("memory", "pids", "cpu"): a pids cgroup replaces RLIMIT_NPROC."""


class Launch(BaseModel):
    """A sandboxed command ready to start: the launcher's argv, and the exact environment to start it with.

    No backend puts an environment value on the command line: any local user can read
    /proc/<pid>/cmdline, while a process's environment is readable only by its owner (and
    root). The values travel in the launcher's own environment and reach the sandboxed
    command from there, so start `argv` with exactly `env`, never with os.environ.
    """

    model_config = ConfigDict(frozen=True)

    argv: list[str]
    env: dict[str, str] = Field(repr=False)
    """The launcher's whole environment (RunSpec.env, plus what the launcher itself needs); kept out of reprs."""
