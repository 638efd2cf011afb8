"""Docker backend: `docker run` with no network, a read-only root, dropped capabilities and cgroup limits.

The engine is asked through the `docker` package whether it answers; the run itself goes
through the `docker` CLI so that the launch can be handed to any stdio client.
Interpreters and environments are bind-mounted read-only at their host paths, so the
image only needs a C library compatible with the host's interpreter. The container's
environment is named on the command line (`-e NAME`) but its values come from the docker
CLI's own environment (Launch.env), so none shows in `ps`.
"""

from __future__ import annotations

import math
import os

from sandbox.backends.mounts import (
    NOBODY,
    check_readable_by,
    check_spec_paths,
    find_tool,
    hand_workdir_to,
    interpreter_roots,
)
from sandbox.errors import SandboxError
from sandbox.policy import launcher_env
from sandbox.spec import Launch, RunSpec

DEFAULT_IMAGE = "python:3.11-slim"
"""Image used when none is configured."""

CLI_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
           "DOCKER_API_VERSION", "XDG_RUNTIME_DIR")
"""Variables of the builder's environment the docker CLI itself needs (which engine, its configuration)."""


class DockerBackend:
    """Isolation in a Docker container; used where an engine answers and bubblewrap does not work."""

    name = "docker"
    isolates = True
    confines_itself = True
    """Each run is a container with its own memory, pids and CPU limits: no host cgroup is made for it."""

    def __init__(self, image: str = DEFAULT_IMAGE, *, ping_timeout: float = 3.0) -> None:
        """Run in `image`; give up pinging the engine after `ping_timeout` seconds (limits come from each RunSpec)."""
        self.image = image
        self._ping_timeout = ping_timeout
        self._cli = find_tool("docker")
        self._probe: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        """Ping the engine once (DOCKER_HOST or the default socket) and say why not if it does not answer."""
        if self._probe is None:
            self._probe = self._ping()
        return self._probe

    def _ping(self) -> tuple[bool, str]:
        if not self._cli:
            return False, "the docker CLI is not on PATH"
        try:
            import docker  # imported here: the package is only needed to ask the engine
        except ImportError as exc:
            return False, f"the docker Python package is not installed: {exc}"
        try:
            client = docker.from_env(timeout=self._ping_timeout)
            try:
                client.ping()
                version = client.version().get("Version", "?")
            finally:
                client.close()
        except Exception as exc:  # the package raises several unrelated types for "no engine"
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            return False, f"no Docker engine answers at {where}: {type(exc).__name__}: {str(exc)[:200]}"
        return True, f"Docker engine {version} answers; image {self.image}"

    def launch(self, argv: list[str], spec: RunSpec) -> Launch:
        """A `docker run -i --rm ...` launch for `argv` (side effect: workdir is chowned to 65534)."""
        if not self._cli:
            raise NotImplementedError("docker backend is unusable here: the docker CLI is not on PATH")
        check_spec_paths(spec)
        env = self._cli_env(spec.env)
        check_readable_by(NOBODY, spec.readonly_paths)
        if os.geteuid() == 0:
            hand_workdir_to(NOBODY, spec.workdir)
        limits = spec.limits
        mib = 1024 * 1024
        workdir = str(spec.workdir)
        args = [
            self._cli, "run", "-i", "--rm", "--init",
            "--network", "bridge" if spec.network else "none",
            "--user", f"{NOBODY}:{NOBODY}",
            "--read-only",
            *(["-v", f"{spec.tmp_dir}:/tmp"] if spec.tmp_dir else ["--tmpfs", f"/tmp:rw,exec,size={limits.disk_mb}m"]),
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", f"{limits.sandbox_memory_mb}m", "--memory-swap", f"{limits.sandbox_memory_mb}m",
            "--pids-limit", str(limits.processes),
            "--cpus", f"{limits.cpus:g}",
            "--ulimit", f"cpu={limits.cpu_seconds}:{limits.cpu_seconds}",
            "--ulimit", f"fsize={limits.file_size_mb * mib}:{limits.file_size_mb * mib}",
            "--ulimit", "core=0:0",
            "-v", f"{workdir}:{workdir}", "-w", workdir,
        ]
        for path in dict.fromkeys([*interpreter_roots(argv, spec.readonly_paths), *spec.readonly_paths]):
            args += ["-v", f"{path}:{path}:ro"]
        for key in spec.env:
            args += ["-e", key]  # no "=": docker takes the value from its own environment
        # Killing the docker CLI (our timeout, a cancel) does not stop the container; `timeout` inside does,
        # so a server that ignores its closed stdin still ends within the wall-clock limit.
        lifetime = str(math.ceil(limits.wall_seconds) + 5)
        argv = [*args, "--label", "mcp-foundry=sandbox", self.image, "timeout", "-s", "KILL", lifetime, *argv]
        return Launch(argv=argv, env=env)

    @staticmethod
    def _cli_env(env: dict[str, str]) -> dict[str, str]:
        """The docker CLI's environment: what it needs to reach its engine, and the container's variables."""
        clash = sorted(name for name in env if name in CLI_ENV)
        if clash:
            raise SandboxError(f"environment variable(s) {', '.join(clash)} cannot be given to sandboxed code under "
                               "the docker backend: the docker CLI reads them itself")
        own = {name: os.environ[name] for name in CLI_ENV if name in os.environ}
        if "DOCKER_CONFIG" not in own and os.environ.get("HOME"):  # HOME below is the container's, not the CLI's
            own["DOCKER_CONFIG"] = os.path.join(os.environ["HOME"], ".docker")
        return {**launcher_env(env), **own}
