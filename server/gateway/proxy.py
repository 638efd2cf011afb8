"""The gateway: what the deployed servers add to the foundry's MCP face, and the processes that answer for them.

It reads what is mounted from the servers directory and looks again every `mount_poll_s`
(servers/.generation and each `current` pointer), so a deploy, rollback or removal made by
any process (a worker, the CLI, another `serve`) reaches this one. When a list changes,
every listener is told which kinds changed ("tools", "resources", "prompts"); a process
whose version is no longer current is stopped. The table also says which limits a mounted
server's sandbox gets here, learnt once, beside the first handshake rather than before it
(finding the sandbox backend runs a probe).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.lowlevel.helper_types import ReadResourceContents

from sandbox.errors import SandboxError
from sandbox.limits import LimitState
from server.gateway.errors import GatewayError
from server.gateway.launch import serve_states
from server.gateway.mounts import Mount, MountTable, fingerprint, scan
from server.gateway.process import ServerProcess

if TYPE_CHECKING:
    from builder.service import Foundry

Listener = Callable[[set[str]], Awaitable[None]]
log = logging.getLogger("mcp_foundry.gateway")


class Gateway:
    """Mounted servers for one serving process (enter with `async with`)."""

    def __init__(self, foundry: Foundry, *, only: set[str] | None = None):
        """Mount every deployed server, or only those named in `only`."""
        self.foundry = foundry
        self.settings = foundry.settings
        self.only = only
        self.table = MountTable()
        self.listeners: list[Listener] = []
        self._processes: dict[str, ServerProcess] = {}
        self._fingerprint: str | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._limits: list[LimitState] = []

    async def __aenter__(self) -> Gateway:
        await self.refresh()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._watch)
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # each process's transport stops its sandbox, shielded
        return await self._tg.__aexit__(*exc)

    # -- what the face lists ----------------------------------------------------------------------------------------
    def tools(self) -> list[types.Tool]:
        """Every mounted tool under its exposed name."""
        return list(self.table.tools)

    def resources(self) -> list[types.Resource]:
        """Every mounted resource under its exposed URI."""
        return list(self.table.resources)

    def templates(self) -> list[types.ResourceTemplate]:
        """Every mounted resource template under its exposed URI template."""
        return list(self.table.templates)

    def prompts(self) -> list[types.Prompt]:
        """Every mounted prompt under its exposed name."""
        return list(self.table.prompts)

    def has_tool(self, name: str) -> bool:
        """True when `name` is a mounted tool (not one of the foundry's own)."""
        return name in self.table.tool_index

    def has_prompt(self, name: str) -> bool:
        """True when `name` is a mounted prompt."""
        return name in self.table.prompt_index

    # -- what the face forwards ------------------------------------------------------------------------------------
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Call a mounted tool by its exposed name."""
        found = self.table.tool(name)
        if found is None:
            raise GatewayError(f"{name} is no longer mounted (its server was removed or changed); list the tools "
                               "again")
        mount, original = found
        return await self._process_for(mount).call_tool(original, arguments)

    async def read_resource(self, uri: str) -> list[ReadResourceContents] | None:
        """Read a mounted resource by its exposed URI; None when the URI is not a mounted server's."""
        found = self.table.resource(uri)
        if found is None:
            return None
        mount, original = found
        result = await self._process_for(mount).read_resource(original)
        return [ReadResourceContents(content=c.text, mime_type=c.mime_type)
                if isinstance(c, types.TextResourceContents) else
                ReadResourceContents(content=base64.b64decode(c.blob), mime_type=c.mime_type)
                for c in result.contents]

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        """Render a mounted prompt by its exposed name."""
        found = self.table.prompt(name)
        if found is None:
            raise GatewayError(f"{name} is no longer mounted; list the prompts again")
        mount, original = found
        return await self._process_for(mount).get_prompt(original, arguments)

    def _process_for(self, mount: Mount) -> ServerProcess:
        proc = self._processes.get(mount.name)
        if proc is None or proc.mount.identity != mount.identity:
            assert self._tg is not None, "enter the Gateway with `async with` first"
            proc = ServerProcess(mount, self.settings, lambda: self.foundry.backend, self._tg)
            self._processes[mount.name] = proc
        return proc

    # -- following the servers directory ---------------------------------------------------------------------------
    async def refresh(self) -> set[str]:
        """Read the servers directory again if it changed; returns the kinds of list that changed."""
        servers_dir = self.settings.servers_dir
        current = await anyio.to_thread.run_sync(fingerprint, servers_dir)
        if current == self._fingerprint:
            return set()
        table = await anyio.to_thread.run_sync(scan, servers_dir, self.only)
        table = table.model_copy(update={"limits": self._limits})
        old, self.table, self._fingerprint = self.table, table, current
        for name, reason in table.skipped.items():
            if name not in old.skipped:
                log.warning("not mounting %s: %s", name, reason)
        stale = [p for name, p in self._processes.items()
                 if name not in table.mounts or table.mounts[name].identity != p.mount.identity]
        for proc in stale:
            del self._processes[proc.mount.name]
            now = table.mounts.get(proc.mount.name)
            reason = f"v{now.version} became current" if now else "it was removed"
            if self._tg is not None:
                self._tg.start_soon(proc.stop, reason)
        changed = {kind for kind, a, b in (("tools", old.tools, table.tools),
                                            ("resources", old.resources + old.templates,
                                             table.resources + table.templates),
                                            ("prompts", old.prompts, table.prompts)) if a != b}
        if {(m.name, m.identity) for m in old.mounts.values()} != {(m.name, m.identity) for m in table.mounts.values()}:
            changed.add("tools")  # another version answers now (a rollback), even when its definitions read the same
        if changed:
            log.info("mounted: %s (%s changed)", ", ".join(f"{m.name} v{m.version}" for m in table.mounts.values())
                     or "nothing", ", ".join(sorted(changed)))
        return changed

    async def _learn_limits(self) -> None:
        try:
            self._limits = await anyio.to_thread.run_sync(lambda: serve_states(self.settings, self.foundry.backend))
        except SandboxError as e:  # no backend works here: a call to a mounted server says so
            log.warning("no limits for mounted servers: %s", e)
            return
        self.table = self.table.model_copy(update={"limits": self._limits})

    async def _watch(self) -> None:
        await self._learn_limits()
        while True:
            await anyio.sleep(self.settings.mount_poll_s)
            try:
                changed = await self.refresh()
            except Exception as e:  # noqa: BLE001 - a bad read now must not end serving; the next poll retries
                log.warning("reading the servers directory failed: %s", e)
                continue
            for listener in list(self.listeners) if changed else []:
                try:
                    await listener(changed)
                except Exception as e:  # noqa: BLE001 - one listener's failure must not silence the others
                    log.warning("telling a listener that %s changed failed: %s", ", ".join(sorted(changed)), e)
