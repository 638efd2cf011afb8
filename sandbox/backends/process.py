"""Plain-process backend: limits and a clean environment, but NO isolation. Last resort only.

The launch starts a tiny Python shim (the builder's own interpreter, isolated mode, so it
ignores the PYTHON* variables meant for the command) that sets the work dir and the rlimits
and then execs the command, which inherits the shim's environment (Launch.env): no value
is on a command line. A shim rather than `prlimit`/`env -C` because it works wherever the
builder's Python does.
RLIMIT_NPROC is left out on purpose: it counts every process of the builder's user on the
host, so it would either do nothing (root) or stop the user's own session from forking;
a fork bomb here is ended by the wall-clock timeout and the process-tree kill in run.py.
"""

from __future__ import annotations

import json
import logging
import sys

from sandbox.backends.mounts import check_spec_paths
from sandbox.limits.cgroups import join_argv
from sandbox.policy import launcher_env
from sandbox.spec import Launch, RunSpec

logger = logging.getLogger(__name__)

NO_ISOLATION_WARNING = (
    "process backend does NOT isolate: generated code runs as the builder's user with its network, "
    "files and processes in reach; only rlimits, a clean environment and the timeout apply. "
    "Install bubblewrap (Linux) or start a Docker engine."
)

# Runs as `python -I -S -c _SHIM <config-json> <argv...>`; the config carries cwd and limits (the environment is
# the shim's own, passed on by exec).
_SHIM = """
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
os.chdir(cfg["cwd"])
for name, value in cfg["limits"].items():
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError) as exc:
        print(f"sandbox: could not set {name}={value}: {exc}", file=sys.stderr)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"sandbox: cannot execute {sys.argv[2]!r}: {exc}", file=sys.stderr)
    sys.exit(127)
"""


class ProcessBackend:
    """Runs the command as an ordinary child process with rlimits; says loudly that it does not isolate."""

    name = "process"
    isolates = False

    def __init__(self, python: str | None = None) -> None:
        """Use `python` (default: the builder's own interpreter) to run the limits shim."""
        self._python = python or sys.executable

    def available(self) -> tuple[bool, str]:
        """Always usable; the reason carries the no-isolation warning."""
        return True, f"WARNING: {NO_ISOLATION_WARNING}"

    def launch(self, argv: list[str], spec: RunSpec) -> Launch:
        """A launch that runs `argv` in spec.workdir with spec.env and spec.limits (and warns)."""
        check_spec_paths(spec)
        env = launcher_env({**spec.env, "TMPDIR": str(spec.tmp_dir)} if spec.tmp_dir else spec.env)
        logger.warning("%s (running %s)", NO_ISOLATION_WARNING, argv[:1])
        mib = 1024 * 1024
        limits = spec.limits
        config = {
            "cwd": str(spec.workdir),
            "limits": {
                "RLIMIT_CPU": limits.cpu_seconds,
                "RLIMIT_AS": limits.memory_mb * mib,
                "RLIMIT_FSIZE": limits.file_size_mb * mib,
                "RLIMIT_CORE": 0,
            },
        }
        shim = [self._python, "-I", "-S", "-c", _SHIM, json.dumps(config), *argv]
        return Launch(argv=join_argv(spec.cgroup_procs, shim), env=env)
