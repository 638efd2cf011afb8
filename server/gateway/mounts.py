"""What `serve` mounts (the current version of each deployed server) and the names its parts get on the foundry's face.

Tools and prompts are named `<server>__<name>`; a name longer than 64 characters keeps
its first 55 and ends in "_" and 8 hex digits of a sha256 of "<server>/<name>", so it is
valid for every client and the same in every process and every run. Resources and
resource templates keep their URI behind the prefix `foundry://servers/<server>/`, which
stays a valid URI for every server name (a `<server>+` scheme would not: URI schemes
allow no '_').

The lists are built from each manifest, so listing starts no process: a server starts on
its first call.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import mcp_types as types
from pydantic import BaseModel, ConfigDict

from builder import deploy
from builder.errors import BuildError
from sandbox.limits import LimitState

SEP = "__"
MAX_NAME = 64
HASH_CHARS = 8
RESOURCE_PREFIX = "foundry://servers/"
log = logging.getLogger("mcp_foundry.gateway")


def exposed_name(server: str, name: str, *, hashed: bool = False) -> str:
    """`<server>__<name>`, shortened with a stable hash when over 64 characters (or when `hashed`)."""
    full = f"{server}{SEP}{name}"
    if len(full) <= MAX_NAME and not hashed:
        return full
    digest = hashlib.sha256(f"{server}/{name}".encode()).hexdigest()[:HASH_CHARS]
    return f"{full[:MAX_NAME - HASH_CHARS - 1]}_{digest}"


def resource_prefix(server: str) -> str:
    """The URI prefix of one server's resources and resource templates."""
    return f"{RESOURCE_PREFIX}{server}/"


class Mount(BaseModel):
    """One mounted server: its current manifest and the names its tools, prompts and resources get."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    identity: str
    """Changes whenever a different deployment becomes current (a new version, a rollback, a redeploy)."""
    manifest: deploy.Manifest
    tools: dict[str, str]
    """Exposed name -> the server's own tool name."""
    prompts: dict[str, str]
    """Exposed name -> the server's own prompt name."""

    def original_uri(self, uri: str) -> str | None:
        """The server's own URI behind an exposed one, or None when `uri` is not this server's."""
        prefix = resource_prefix(self.name)
        return uri[len(prefix):] if uri.startswith(prefix) else None


class MountTable(BaseModel):
    """Everything mounted at one moment, with the lists the foundry's face shows."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    mounts: dict[str, Mount] = {}
    tools: list[types.Tool] = []
    resources: list[types.Resource] = []
    templates: list[types.ResourceTemplate] = []
    prompts: list[types.Prompt] = []
    skipped: dict[str, str] = {}
    """Deployed servers not mounted, with the reason."""
    tool_index: dict[str, str] = {}
    """Exposed tool name -> server name."""
    prompt_index: dict[str, str] = {}
    """Exposed prompt name -> server name."""
    schemas: dict[str, dict[str, Any]] = {}
    """Exposed tool name -> its input schema."""
    limits: list[LimitState] = []
    """The limits each mounted server's sandbox gets in this process (set by the Gateway)."""

    def tool(self, exposed: str) -> tuple[Mount, str] | None:
        """The mount and original name behind an exposed tool name."""
        m = self.mounts.get(self.tool_index.get(exposed, ""))
        return (m, m.tools[exposed]) if m is not None else None

    def prompt(self, exposed: str) -> tuple[Mount, str] | None:
        """The mount and original name behind an exposed prompt name."""
        m = self.mounts.get(self.prompt_index.get(exposed, ""))
        return (m, m.prompts[exposed]) if m is not None else None

    def resource(self, uri: str) -> tuple[Mount, str] | None:
        """The mount and original URI behind an exposed resource URI."""
        if uri.startswith(RESOURCE_PREFIX):
            m = self.mounts.get(uri[len(RESOURCE_PREFIX):].split("/", 1)[0])
            original = m.original_uri(uri) if m else None
            if m is not None and original:
                return m, original
        return None


def _unique(server: str, names: list[str], taken: set[str]) -> dict[str, str]:
    """Exposed name -> original for one server's names, never reusing a name already taken."""
    out: dict[str, str] = {}
    for original in names:
        name = exposed_name(server, original)
        if name in taken:  # e.g. server "a__b" tool "c" against server "a" tool "b__c": the later one is hashed
            name = exposed_name(server, original, hashed=True)
        if name in taken:
            log.warning("not mounting %s's %r: its name %s is taken", server, original, name)
            continue
        taken.add(name)
        out[name] = original
    return out


def _tool(exposed: str, info: dict[str, Any]) -> types.Tool:
    annotations = info.get("annotations") or None
    return types.Tool(name=exposed, description=info.get("description"), input_schema=info.get("input_schema") or
                      {"type": "object"}, output_schema=info.get("output_schema"),
                      annotations=types.ToolAnnotations.model_validate(annotations) if annotations else None)


def mount_of(manifest: deploy.Manifest, taken: set[str], table: dict[str, list[Any]]) -> Mount:
    """A Mount for a manifest, its tools/resources/templates/prompts appended to `table`'s lists."""
    name = manifest.name
    by_tool = {t["name"]: t for t in manifest.tools if t.get("name")}
    tools = _unique(name, list(by_tool), taken)
    table["tools"] += [_tool(exposed, by_tool[original]) for exposed, original in tools.items()]
    validation = manifest.validation or {}
    prompt_infos = {p["name"]: p for p in validation.get("prompts") or [] if p.get("name")}
    prompts = _unique(name, list(prompt_infos), taken)
    table["prompts"] += [types.Prompt(name=exposed, description=prompt_infos[original].get("description"),
                                      arguments=[types.PromptArgument(name=a) for a in
                                                 prompt_infos[original].get("arguments") or []])
                         for exposed, original in prompts.items()]
    for r in validation.get("resources") or []:
        uri = resource_prefix(name) + r["uri"]
        if r.get("template"):
            table["templates"].append(types.ResourceTemplate(uri_template=uri, name=r.get("name") or r["uri"],
                                                             description=r.get("description"),
                                                             mime_type=r.get("mime_type")))
        else:
            table["resources"].append(types.Resource(uri=uri, name=r.get("name") or r["uri"],
                                                     description=r.get("description"), mime_type=r.get("mime_type")))
    return Mount(name=name, version=manifest.version, identity=f"{manifest.version}@{manifest.created_at}",
                 manifest=manifest, tools=tools, prompts=prompts)


def scan(servers_dir: Path, only: set[str] | None = None) -> MountTable:
    """Read what is deployed now: the current version of every server (of those in `only`, when given)."""
    lists: dict[str, list[Any]] = {"tools": [], "resources": [], "templates": [], "prompts": []}
    mounts: dict[str, Mount] = {}
    skipped: dict[str, str] = {}
    taken: set[str] = set()
    try:
        deployed = deploy.list_servers(servers_dir)
    except (OSError, ValueError, BuildError) as e:  # a half-written tree: keep serving, look again next time
        log.warning("cannot read %s: %s", servers_dir, e)
        deployed = []
    for summary in deployed:
        if only is not None and summary.name not in only:
            continue
        try:
            manifest = deploy.get_server(servers_dir, summary.name)
        except (OSError, ValueError, BuildError) as e:
            skipped[summary.name] = f"its manifest cannot be read: {e}"
            continue
        if not Path(manifest.env_path).is_dir():
            skipped[summary.name] = f"its environment {manifest.env_path} is missing; deploy it again"
            continue
        mounts[summary.name] = mount_of(manifest, taken, lists)
    return MountTable(mounts=mounts, skipped=skipped, **lists,
                      tool_index={t: m.name for m in mounts.values() for t in m.tools},
                      prompt_index={p: m.name for m in mounts.values() for p in m.prompts},
                      schemas={t.name: t.input_schema for t in lists["tools"]})


def fingerprint(servers_dir: Path) -> str:
    """Changes whenever what is deployed changes: servers/.generation, plus each server's `current` pointer (so a
    tree edited by hand is noticed too). A few small reads: cheap enough to poll every second."""
    parts = [deploy.generation(servers_dir)]
    try:
        names = sorted(os.listdir(servers_dir))
    except OSError:
        return "\0".join(parts)
    for name in names:
        pointer = servers_dir / name / deploy.CURRENT
        try:
            parts.append(f"{name}={pointer.read_text().strip()}:{pointer.stat().st_mtime_ns}")
        except OSError:
            continue
    return "\0".join(parts)


def details(manifest: deploy.Manifest, servers_dir: Path, table: MountTable | None = None,
            limits: list[LimitState] | None = None) -> dict[str, Any]:
    """How a deployed version appears on the foundry's face: exposed names (original -> exposed), resource prefix,
    state dir and its size on disk, whether this process mounts it now (None when unknown here), and the limits its
    sandbox gets (`limits`, else those of `table`'s mounts; None when unknown here)."""
    from server.gateway.launch import disk_usage

    mount = table.mounts.get(manifest.name) if table is not None else None
    if mount is None or mount.version != manifest.version:
        mount = mount_of(manifest, set(), {"tools": [], "resources": [], "templates": [], "prompts": []})
        mounted = False if table is not None else None
    else:
        mounted = True
    if limits is None and table is not None and table.limits:
        limits = table.limits
    state = deploy.state_dir(servers_dir, manifest.name)
    return {"exposed_tools": {v: k for k, v in mount.tools.items()},
            "exposed_prompts": {v: k for k, v in mount.prompts.items()},
            "resource_prefix": resource_prefix(manifest.name),
            "state_dir": str(state),
            "state_dir_bytes": disk_usage(state),
            "mounted": mounted,
            "limits": [s.model_dump() for s in limits] if limits is not None else None}
