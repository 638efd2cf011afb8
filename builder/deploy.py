"""Deploy: servers/<name>/<version>/ with the files, a manifest, a client config snippet and a `current` pointer.

A deployed server runs in a hard-linked copy of the dependency environment it was
validated in (<version>/.venv), so what was tested is exactly what runs, and pruning the
env cache never breaks a deployed server. Versions are integers counted up per name; a
rebuild adds a version and keeps the old ones, `rollback_server` moves the pointer.
Every version of a name shares one writable state dir (servers/<name>/state/), so data a
server keeps survives restarts, new versions and rollbacks; removing every version removes it.

Every change (deploy, rollback, removal) rewrites servers/.generation while the name's lock
is held, so a process serving the deployed servers sees changes made by any other process.
The client config snippet runs the server sandboxed through `mcp-foundry run NAME`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, Field

from builder.draft import ServerDraft
from builder.errors import InputError

MANIFEST = "manifest.json"
CLIENT_CONFIG = "client_config.json"
CURRENT = "current"
VENV = ".venv"
STATE = "state"
GENERATION = ".generation"
FOUNDRY_CREDENTIALS = ("MCP_FOUNDRY_LLM_API_KEY", "OPENAI_API_KEY", "MCP_FOUNDRY_HTTP_TOKEN",
                       "MCP_FOUNDRY_GITHUB_TOKEN")
"""The foundry's own credentials: never declarable as a deployed server's secret."""


class Registration(BaseModel):
    """Outcome of posting a manifest to the tool registry."""

    url: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class Manifest(BaseModel):
    """Everything known about one deployed version."""

    name: str
    version: str
    created_at: str
    directory: str
    summary: str = ""
    request: str = ""
    tools: list[dict[str, Any]] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list)
    hashes: dict[str, str] = Field(default_factory=dict)
    """sha256 of each deployed file."""
    env_path: str = ""
    """The version's own venv, linked from the environment it was validated in."""
    command: list[str] = Field(default_factory=list)
    """The exact command line that runs the server over stdio, unsandboxed."""
    needs_network: bool = False
    """The server may use the network when it runs (manifests written before this field: no network)."""
    secrets: list[str] = Field(default_factory=list)
    """Environment variables the server receives when it runs, taken from the foundry's environment or the data
    dir's secrets.env; nothing else of that environment reaches it."""
    client_config: dict[str, Any] = Field(default_factory=dict)
    """For a client's mcpServers: runs the server in the sandbox (`mcp-foundry run NAME`), current version."""
    unsandboxed_client_config: dict[str, Any] = Field(default_factory=dict)
    """UNSANDBOXED: runs the code directly, with your user's files, environment and network; for those who choose
    it."""
    validation: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    reused_case_id: str | None = None
    registration: Registration | None = None


class ServerSummary(BaseModel):
    """A deployed server name with its versions and the current one."""

    name: str
    current: str | None
    versions: list[str]
    summary: str = ""
    env_present: bool = True


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError("name", f"{name!r} is not a server name", "a deployed server's name (see list_servers)")


def _versions(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise version allocation and pointer moves between builds and processes."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def foundry_command() -> list[str]:
    """How a client starts this mcp-foundry: its console script beside the interpreter, else `python -m server.cli`."""
    script = Path(sys.executable).with_name("mcp-foundry")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "server.cli"]


def client_config(name: str, servers_dir: Path) -> dict[str, Any]:
    """The snippet a client such as Claude Desktop puts under mcpServers: the current version, sandboxed.

    In the default layout the servers live in `<data dir>/servers`, so the snippet names that
    data dir; a servers dir set apart (MCP_FOUNDRY_SERVERS_DIR, shared by a team) is passed
    as that variable, with the client machine's own data dir.
    """
    command = foundry_command()
    if servers_dir.name == "servers":
        return {"mcpServers": {name: {"command": command[0], "args": [*command[1:], "--data-dir",
                                                                       str(servers_dir.parent), "run", name]}}}
    return {"mcpServers": {name: {"command": command[0], "args": [*command[1:], "run", name],
                                  "env": {"MCP_FOUNDRY_SERVERS_DIR": str(servers_dir)}}}}


def unsandboxed_client_config(name: str, python: Path, server_py: Path) -> dict[str, Any]:
    """A snippet that runs the code directly, outside the sandbox (labelled so wherever it is shown)."""
    return {"mcpServers": {name: {"command": str(python), "args": [str(server_py)]}}}


def state_dir(servers_dir: Path, name: str) -> Path:
    """The one writable, persistent directory every version of `name` runs in."""
    return servers_dir / name / STATE


def check_secret_names(names: list[str]) -> list[str]:
    """Declared secret names, checked: environment variable names, never one of the foundry's own credentials."""
    for n in names:
        if not isinstance(n, str) or not n or not (n[0].isalpha() or n[0] == "_") \
                or not n.replace("_", "").isalnum() or not n.isascii():
            raise InputError("secrets", f"{n!r} is not an environment variable name",
                             "names of letters, digits and '_', not starting with a digit, e.g. WEATHER_API_KEY")
        if n in FOUNDRY_CREDENTIALS or n.startswith("MCP_FOUNDRY_"):
            raise InputError("secrets", f"{n} is the foundry's own configuration or credential",
                             "a variable meant for this server; the foundry never hands its own credentials on")
    return sorted(set(names))


def bump_generation(servers_dir: Path) -> None:
    """Record that what is deployed changed: servers/.generation gets a new value (atomic replace)."""
    servers_dir.mkdir(parents=True, exist_ok=True)
    tmp = servers_dir / f"{GENERATION}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(f"{time.time_ns()} {uuid.uuid4().hex}\n")
    tmp.replace(servers_dir / GENERATION)


def generation(servers_dir: Path) -> str:
    """The current value of servers/.generation ("" before the first change)."""
    try:
        return (servers_dir / GENERATION).read_text().strip()
    except OSError:
        return ""


def link_env(source: Path, dest: Path) -> None:
    """Give a deployed version its own venv: a hard-linked copy of the (relocatable) validated environment.

    Hard links cost no space and survive the env cache's cleanup; across file systems it falls back to copying.
    """
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, dest, symlinks=True, copy_function=link,
                    ignore=shutil.ignore_patterns("foundry-env.json"))


def deploy(servers_dir: Path, name: str, draft: ServerDraft, *, env_path: Path, summary: str = "",
           request: str = "", tools: list[dict[str, Any]] | None = None, validation: dict[str, Any] | None = None,
           metrics: dict[str, Any] | None = None, reused_case_id: str | None = None, needs_network: bool = False,
           secrets: list[str] | None = None) -> Manifest:
    """Write a new version of `name` with its own venv linked from `env_path`, point `current` at it."""
    _check_name(name)
    secrets = check_secret_names(list(secrets or []))
    root = servers_dir / name
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        draft.write_to(staging)
        link_env(env_path, staging / VENV)
        with _locked(root):
            existing = _versions(root)
            version = str(int(existing[-1]) + 1 if existing else 1)
            final = root / version
            server_py = final / "server.py"
            python = final / VENV / "bin" / "python"
            manifest = Manifest(
                name=name, version=version, created_at=datetime.now(UTC).isoformat(), directory=str(final),
                summary=summary, request=request, tools=tools or [], dependencies=draft.requirements(),
                hashes=draft.hashes(), env_path=str(final / VENV), command=[str(python), str(server_py)],
                needs_network=needs_network, secrets=secrets, client_config=client_config(name, servers_dir),
                unsandboxed_client_config=unsandboxed_client_config(name, python, server_py),
                validation=validation or {}, metrics=metrics or {}, reused_case_id=reused_case_id)
            _write_manifest(staging, manifest)
            staging.rename(final)
            _set_current(root, version)
            bump_generation(servers_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    (directory / CLIENT_CONFIG).write_text(json.dumps(manifest.client_config, indent=2), encoding="utf-8")


def _set_current(root: Path, version: str) -> None:
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:6]}"
    tmp.write_text(version)
    tmp.replace(root / CURRENT)


def current_version(servers_dir: Path, name: str) -> str | None:
    """The version `current` points at, or None."""
    pointer = servers_dir / name / CURRENT
    return pointer.read_text().strip() if pointer.is_file() else None


def get_server(servers_dir: Path, name: str, version: str | None = None) -> Manifest:
    """The manifest of one version (the current one by default); InputError for unknown names or versions."""
    _check_name(name)
    root = servers_dir / name
    versions = _versions(root)
    if not versions:
        raise InputError("name", f"no deployed server named {name!r}", "a name from list_servers")
    version = version or current_version(servers_dir, name) or versions[-1]
    if version not in versions:
        raise InputError("version", f"{name!r} has no version {version!r}", f"one of {', '.join(versions)}")
    return _upgraded(servers_dir, Manifest.model_validate_json((root / version / MANIFEST).read_text(encoding="utf-8")))


def _upgraded(servers_dir: Path, manifest: Manifest) -> Manifest:
    """A manifest written before the sandboxed snippet existed: its snippet was the unsandboxed one; say so."""
    if not manifest.unsandboxed_client_config:
        manifest.unsandboxed_client_config = manifest.client_config
        manifest.client_config = client_config(manifest.name, servers_dir)
    return manifest


def list_servers(servers_dir: Path) -> list[ServerSummary]:
    """Every deployed server with its versions, sorted by name."""
    out = []
    for root in sorted(p for p in servers_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if servers_dir.is_dir() else []:
        versions = _versions(root)
        if not versions:
            continue
        m = get_server(servers_dir, root.name)
        out.append(ServerSummary(name=root.name, current=current_version(servers_dir, root.name),
                                 versions=versions, summary=m.summary, env_present=Path(m.env_path).is_dir()))
    return out


def remove_server(servers_dir: Path, name: str, version: str | None = None) -> list[str]:
    """Remove one version (or every version when None); returns the removed versions.

    The state dir goes with the last version (see `state_note`); removing one version keeps it.
    """
    get_server(servers_dir, name, version)
    root = servers_dir / name
    with _locked(root):
        victims = [version] if version else _versions(root)
        for v in victims:
            shutil.rmtree(root / v)
        left = _versions(root)
        if not left:
            shutil.rmtree(root, ignore_errors=True)
        elif current_version(servers_dir, name) not in left:
            _set_current(root, left[-1])
        bump_generation(servers_dir)
    return victims


def state_note(servers_dir: Path, name: str, action: str) -> str:
    """What `action` ("rollback" or "remove") did to the server's state dir, in words."""
    path = state_dir(servers_dir, name)
    if action == "rollback":
        return (f"state kept: {path} is shared by every version, so the version now current sees the data the "
                "others wrote")
    if (servers_dir / name).is_dir():
        return f"state kept: {path} stays for the remaining versions"
    return f"state removed: {path} went with the last version"


def rollback_server(servers_dir: Path, name: str, version: str | None = None) -> Manifest:
    """Point `current` at `version`, or at the version before the current one; returns its manifest."""
    get_server(servers_dir, name)
    root = servers_dir / name
    with _locked(root):
        versions = _versions(root)
        if version is None:
            cur = current_version(servers_dir, name) or versions[-1]
            older = [v for v in versions if int(v) < int(cur)]
            if not older:
                raise InputError("version", f"{name!r} is at its oldest version {cur}; nothing to roll back to",
                                 f"one of {', '.join(versions)}")
            version = older[-1]
        elif version not in versions:
            raise InputError("version", f"{name!r} has no version {version!r}", f"one of {', '.join(versions)}")
        _set_current(root, version)
        bump_generation(servers_dir)
    return get_server(servers_dir, name, version)


def verify_files(manifest: Manifest) -> list[str]:
    """Files of a deployed version whose sha256 no longer matches the manifest (missing files included)."""
    draft_dir = Path(manifest.directory)
    bad = []
    for rel, digest in manifest.hashes.items():
        p = draft_dir / rel
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


async def register(manifest: Manifest, url: str, *, attempts: int = 3, backoff_s: float = 0.5,
                   timeout_s: float = 10.0, log: Callable[[str], None] | None = None) -> Registration:
    """POST the manifest to a tool registry with retries; never raises, the outcome is returned and recorded."""
    error, status = None, None
    body = manifest.model_dump(mode="json", exclude={"registration"})
    for attempt in range(1, attempts + 1):
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                resp = await client.post(url, json=body)
            status = resp.status_code
            if resp.status_code < 300:
                reg = Registration(url=url, ok=True, attempts=attempt, status=status)
                break
            error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        if log:
            log(f"registry: attempt {attempt}/{attempts} failed: {error}")
        if attempt < attempts:
            await anyio.sleep(backoff_s * 2 ** (attempt - 1))
    else:
        reg = Registration(url=url, ok=False, attempts=attempts, status=status, error=error)
    manifest.registration = reg
    _write_manifest(Path(manifest.directory), manifest)
    return reg


def remove_partial(servers_dir: Path, name: str) -> None:
    """Drop staging leftovers of an interrupted deploy (never a finished version)."""
    root = servers_dir / name
    for p in root.glob(".staging-*") if root.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)

