"""The one interface every isolation backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sandbox.spec import Launch, RunSpec


@runtime_checkable
class Backend(Protocol):
    """Turns a command line into a Launch that runs it inside the sandbox.

    The launch is an ordinary argv and environment, so the same backend serves a plain
    subprocess run and an MCP stdio client that launches the server under test.
    """

    name: str
    """Short name used in config and reports: "bubblewrap", "docker" or "process"."""

    isolates: bool
    """False only for the plain-process fallback, which must warn loudly."""

    def available(self) -> tuple[bool, str]:
        """Whether this backend works here, and a one-line reason either way."""
        ...

    def launch(self, argv: list[str], spec: RunSpec) -> Launch:
        """The launcher argv and environment that run `argv` isolated as `spec` says (cwd = spec.workdir).

        spec.env reaches the command through the launcher's environment (Launch.env), never
        through its argv, where every local user could read it.
        """
        ...
