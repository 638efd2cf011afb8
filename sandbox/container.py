"""Whether mcp-foundry runs in a container, and what isolation its sandbox has there (what `doctor` says).

In a container the choice is between two evils, and `doctor` names the one in force:
- bubblewrap: the container needs its seccomp filter, AppArmor profile and /proc masks
  relaxed (compose.yaml's `security_opt`) so that an unprivileged user can make the user,
  mount and PID namespaces a sandbox is; the foundry itself runs as a plain user.
- Docker: the engine's socket mounted into the container; each server under test gets a
  container of its own, but whoever takes over the foundry's container owns the host.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.backends.base import Backend

BWRAP_IN_CONTAINER = ("bubblewrap needs the container started with security_opt seccomp=unconfined, "
                      "apparmor=unconfined and systempaths=unconfined (compose.yaml does), as a non-root user")
ENGINE_SOCKET = Path("/var/run/docker.sock")


def container_kind() -> str | None:
    """"docker", "podman" or another engine's name when this process runs in a container; None otherwise."""
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    return os.environ.get("container") or None  # the systemd convention, set by some engines


def engine_reachable() -> bool:
    """True when a Docker engine's socket (or DOCKER_HOST) is within this process's reach."""
    return bool(os.environ.get("DOCKER_HOST")) or ENGINE_SOCKET.exists()


def isolation_lines(backend: Backend) -> list[str]:
    """What `doctor` says about where it runs and the isolation in force, one line each."""
    kind = container_kind()
    lines = [f"in a {kind} container, as uid {os.geteuid()}" if kind else "not in a container"]
    works, why = backend.available()
    if backend.name == "bubblewrap":
        lines.append(f"in force: bubblewrap, {why}")
    elif backend.name == "docker":
        lines.append(f"in force: Docker, a container per sandbox ({why}); holding the engine is root on its host")
    else:
        lines.append(f"in force: NO isolation (plain processes): {why}")
    if kind and backend.name != "bubblewrap":
        lines.append(f"to sandbox with bubblewrap here: {BWRAP_IN_CONTAINER}")
    if kind and engine_reachable():
        lines.append("the Docker engine is reachable from this container: code that escapes here controls the host")
    return lines
