"""The one interface every isolation backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sandbox.spec import RunSpec


@runtime_checkable
class Backend(Protocol):
    """Turns a command line into one that runs it inside the sandbox.

    The wrapped command is an ordinary argv, so the same backend serves a plain
    subprocess run and an MCP stdio client that launches the server under test.
    """

    name: str
    """Short name used in config and reports: "bubblewrap", "docker" or "process"."""

    isolates: bool
    """False only for the plain-process fallback, which must warn loudly."""

    def available(self) -> tuple[bool, str]:
        """Whether this backend works here, and a one-line reason either way."""
        ...

    def wrap(self, argv: list[str], spec: RunSpec) -> list[str]:
        """Return the argv that runs `argv` isolated as `spec` says (cwd = spec.workdir)."""
        ...
