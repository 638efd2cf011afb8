"""What a sandboxed run is allowed to do: limits and the run specification handed to a backend."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Resource limits applied to every sandboxed process (rlimits plus a wall-clock timeout)."""

    model_config = ConfigDict(frozen=True)

    cpu_seconds: int = Field(60, ge=1, le=3600, description="RLIMIT_CPU: CPU seconds per process.")
    memory_mb: int = Field(1024, ge=64, le=65536, description="RLIMIT_AS: address space per process, MiB.")
    processes: int = Field(64, ge=1, le=4096, description="Maximum number of processes/threads.")
    file_size_mb: int = Field(64, ge=1, le=65536, description="RLIMIT_FSIZE: largest file a process may write, MiB.")
    wall_seconds: float = Field(120, gt=0, le=86400, description="Wall-clock timeout for the whole run.")


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
