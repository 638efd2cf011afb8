"""The run-time policy of a deployed server: the validator's sandbox, plus what its manifest declares.

A deployed server runs through the same Backend.launch/RunSpec path as validation: the same
backend, the environment built from the sandbox's allowlist (sandbox.policy.safe_env), no
network unless the manifest says it needs it, its code and venv read-only. What it adds:
the secrets its manifest declares (taken from the foundry's environment, else from the
data dir's secrets.env; nothing else of either reaches it) and one writable, persistent
state dir, servers/<name>/state/, which is its working directory (a relative
`sqlite3.connect("data.db")` lands there) and is named by $MCP_STATE_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from builder import deploy
from builder.config import Settings
from sandbox.backends.base import Backend
from sandbox.errors import SandboxError
from sandbox.policy import safe_env
from sandbox.spec import Launch, Limits, RunSpec
from server.gateway.errors import GatewayError

SERVE_LIMITS = Limits(cpu_seconds=3600, memory_mb=1024, processes=128, file_size_mb=64, wall_seconds=86400)
"""Limits of a long-running deployed server. The validator's 60 CPU seconds would end a warm server within the
hour; threads count as processes (a server answering many calls at once runs a thread per synchronous call)."""

STATE_ENV = "MCP_STATE_DIR"


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
                   limits=SERVE_LIMITS)
    return [str(python), str(code / "server.py")], spec


def sandboxed_launch(manifest: deploy.Manifest, settings: Settings, backend: Backend) -> tuple[Launch, RunSpec]:
    """The launch that runs one deployed version in the sandbox (its secrets in the environment, not argv), and its
    RunSpec."""
    argv, spec = launch_spec(manifest, settings)
    return backend.launch(argv, spec), spec
