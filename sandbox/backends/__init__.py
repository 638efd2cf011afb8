"""Isolation backends behind one small interface (see base.Backend), and the choice between them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sandbox.backends.base import Backend
from sandbox.backends.bubblewrap import BubblewrapBackend
from sandbox.backends.docker import DockerBackend
from sandbox.backends.process import NO_ISOLATION_WARNING, ProcessBackend
from sandbox.errors import BackendUnavailable, SandboxError

logger = logging.getLogger(__name__)

BACKENDS: dict[str, Callable[[], Backend]] = {
    "bubblewrap": BubblewrapBackend,
    "docker": DockerBackend,
    "process": ProcessBackend,
}
"""Backends by name, in the order "auto" tries them."""

__all__ = ["BACKENDS", "Backend", "BubblewrapBackend", "DockerBackend", "ProcessBackend", "backend_report",
           "get_backend"]


def get_backend(name: str = "auto") -> Backend:
    """The backend called `name`, or for "auto" the first that works: bubblewrap, docker, then process."""
    if name == "auto":
        for candidate in ("bubblewrap", "docker"):
            backend = BACKENDS[candidate]()
            works, why = backend.available()
            if works:
                return backend
            logger.info("sandbox backend %s skipped: %s", candidate, why)
        logger.warning("no isolating sandbox backend works here; falling back to: %s", NO_ISOLATION_WARNING)
        return ProcessBackend()
    factory = BACKENDS.get(name)
    if factory is None:
        accepted = ", ".join(["auto", *BACKENDS])
        raise SandboxError(f"unknown sandbox backend {name!r}; accepted: {accepted}")
    backend = factory()
    works, why = backend.available()
    if not works:
        raise BackendUnavailable(f"sandbox backend {name!r} cannot run here: {why}")
    if not backend.isolates:
        logger.warning(NO_ISOLATION_WARNING)
    return backend


def backend_report() -> list[tuple[str, bool, str]]:
    """(name, works, why) for every backend, for the `doctor` command."""
    return [(name, *factory().available()) for name, factory in BACKENDS.items()]
