"""The run-time policy of a deployed server: the validator's sandbox, plus what its manifest declares.

A deployed server runs through the same Backend.launch/RunSpec path as validation: the
same backend, the environment built from the sandbox's allowlist (sandbox.policy.safe_env),
no network unless the manifest says it needs it, its code and venv read-only, and the
same whole-sandbox limits (sandbox.limits): a cgroup of its own for memory, processes and
CPU, joined before anything runs and removed with everything in it when the server ends,
and a /tmp on a size-limited tmpfs. What it adds: the secrets its manifest declares (taken
from the foundry's environment, else from the data dir's secrets.env; nothing else of
either reaches it; their values travel in the launcher's environment, never its argv) and
one writable, persistent state dir, servers/<name>/state/, which is its working directory
(a relative `sqlite3.connect("data.db")` lands there) and is named by $MCP_STATE_DIR.

The state dir is on the host's disk, not on the tmpfs, so that it survives restarts; no
quota bounds it (a file is bounded by RLIMIT_FSIZE), and `get_server` reports its size.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from builder import deploy
from builder.config import Settings
from sandbox.backends.base import Backend
from sandbox.errors import SandboxError
from sandbox.limits import LimitState, confined, expected_states, workspace
from sandbox.limits.cgroups import SandboxCgroup
from sandbox.policy import safe_env
from sandbox.spec import Launch, Limits, RunSpec
from server.gateway.errors import GatewayError

SERVE_CPU_SECONDS = 3600
"""RLIMIT_CPU of a deployed server's processes: the validator's 60 s would end a warm server within the hour."""
SERVE_WALL_SECONDS = 86400
"""No wall-clock end of its own: the idle timeout, a call timeout or `serve`'s end stops a warm server."""

STATE_ENV = "MCP_STATE_DIR"


def serve_limits(settings: Settings) -> Limits:
    """The limits of a long-running deployed server: the sandbox settings (memory, processes, CPU, /tmp's size),
    with an hour of CPU per process and no wall-clock limit of its own.

    Threads count as processes: a server answering many calls at once runs a thread per
    synchronous call (anyio's default pool: 40), within MCP_FOUNDRY_SANDBOX_PROCESSES.
    """
    return settings.sandbox_limits(cpu_seconds=SERVE_CPU_SECONDS, wall_seconds=SERVE_WALL_SECONDS)


def read_secrets_file(path: Path) -> dict[str, str]:
    """NAME=value lines (blank lines and '#' comments skipped, one pair of surrounding quotes removed)."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise GatewayError(f"{path}:{n}: not a NAME=value line; write one secret per line, e.g. "
                               "WEATHER_API_KEY=abc123")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[name] = value
    return out


def resolve_secrets(manifest: deploy.Manifest, secrets_file: Path,
                    environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of the secrets the manifest declares, and of nothing else."""
    if not manifest.secrets:
        return {}
    environ = os.environ if environ is None else environ
    from_file = read_secrets_file(secrets_file)
    out, missing = {}, []
    for name in manifest.secrets:
        value = environ.get(name) or from_file.get(name)
        if value:
            out[name] = value
        else:
            missing.append(name)
    if missing:
        raise GatewayError(f"{manifest.name} declares the secret(s) {', '.join(missing)}, set neither in the "
                           f"environment of mcp-foundry nor in {secrets_file}; add a NAME=value line there")
    return out


def launch_spec(manifest: deploy.Manifest, settings: Settings) -> tuple[list[str], RunSpec]:
    """The command line (before wrapping) and the RunSpec of one deployed version, per the policy above."""
    code = Path(manifest.directory)
    python = Path(manifest.env_path) / "bin" / "python"
    if not (code / "server.py").is_file() or not python.exists():
        raise GatewayError(f"{manifest.name} v{manifest.version}: {code} or its environment is missing; deploy it "
                           "again (`mcp-foundry servers add` or request_build)")
    state = deploy.state_dir(settings.servers_dir, manifest.name)
    state.mkdir(parents=True, exist_ok=True)
    extra = {"PYTHONPATH": str(code), STATE_ENV: str(state), **resolve_secrets(manifest, settings.secrets_file)}
    try:
        env = safe_env(extra, allow_secret_names=manifest.secrets)
    except SandboxError as e:
        raise GatewayError(f"{manifest.name}: {e}") from None
    spec = RunSpec(workdir=state, readonly_paths=(code,), env=env, network=manifest.needs_network,
                   limits=serve_limits(settings))
    return [str(python), str(code / "server.py")], spec


@dataclass(frozen=True)
class Served:
    """One run of a deployed server, ready to start: how to start it, its spec, and the limits in force."""

    launch: Launch
    spec: RunSpec
    limits: list[LimitState]
    cgroup: SandboxCgroup | None
    """Its cgroup (None where the machine offers none, or the backend confines each run itself)."""


@asynccontextmanager
async def served(manifest: deploy.Manifest, settings: Settings, backend: Backend) -> AsyncIterator[Served]:
    """The sandbox of one run of a deployed version: its cgroup and its size-limited /tmp, for as long as this lasts.

    Start the server inside and leave only once its process has ended: leaving kills
    whatever is still in the cgroup, then removes the cgroup and the /tmp, even when
    the caller is cancelled. The working directory stays the persistent state dir.
    GatewayError when the sandbox cannot be set up (a missing secret, a cgroup that
    cannot be made).
    """
    argv, spec = launch_spec(manifest, settings)
    async with AsyncExitStack() as stack:
        try:
            space = stack.enter_context(workspace(spec.limits.disk_mb, prefix="mcpf-serve"))
            box = await stack.enter_async_context(confined(backend, spec.model_copy(update={"tmp_dir": space.tmp})))
            launch = backend.launch(argv, box.spec)
        except SandboxError as e:
            raise GatewayError(f"{manifest.name} v{manifest.version}: its sandbox cannot be set up: {e}") from None
        disk = _disk_state(spec.limits, space.limited)
        yield Served(launch=launch, spec=box.spec, limits=[disk, *box.states], cgroup=box.cgroup)


def _disk_state(limits: Limits, tmp_limited: bool) -> LimitState:
    why = "mounting a tmpfs needs root" if os.geteuid() != 0 else "the tmpfs could not be mounted"
    tmp = f"/tmp is a tmpfs of {limits.disk_mb} MiB" if tmp_limited else f"/tmp not size-limited ({why})"
    return LimitState(name="disk", in_force=tmp_limited, detail=(
        f"{tmp}; the state dir is on the host's disk with no quota, each file at most {limits.file_size_mb} MiB "
        "(RLIMIT_FSIZE); get_server reports its size (state_dir_bytes)"))


def serve_states(settings: Settings, backend: Backend) -> list[LimitState]:
    """The limits a mounted server's sandbox gets here (for `doctor` and `get_server`); nothing is created."""
    limits = serve_limits(settings)
    disk, *cgroup_states = expected_states(backend, limits)
    return [_disk_state(limits, disk.in_force), *cgroup_states]


def disk_usage(path: Path) -> int:
    """Bytes `path` takes on disk, as `du` counts them (links not followed; 0 when it does not exist)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total
