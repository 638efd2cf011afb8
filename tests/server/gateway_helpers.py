"""Helpers for the gateway tests: real `mcp-foundry serve` sessions that record notifications, and a process-tree
look-up limited to what the test started."""

from __future__ import annotations

import json
import os
import re
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from tests.server.conftest import FOUNDRY, ROOT, foundry_env

FAST = {"MCP_FOUNDRY_MOUNT_POLL": "0.2"}
"""Poll the servers directory five times a second, so a change is seen within the test's patience."""


class Heard:
    """Notifications one session received, with an event per method to wait on."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self._events: dict[str, anyio.Event] = {}

    async def __call__(self, message: object) -> None:
        method = getattr(message, "method", None)
        if method:
            self.methods.append(method)
            self._events.setdefault(method, anyio.Event()).set()

    def reset(self) -> None:
        self.methods.clear()
        self._events.clear()

    async def wait_for(self, method: str, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            await self._events.setdefault(method, anyio.Event()).wait()


@asynccontextmanager
async def serve(data_dir: Path, *args: str, legacy: bool = True, heard: Heard | None = None, **env: str):
    """A real MCP client over stdio to `mcp-foundry serve ARGS` (the handshake-era protocol unless legacy=False)."""
    params = StdioServerParameters(command=FOUNDRY[0], args=[*FOUNDRY[1:], "serve", *args],
                                   env=foundry_env(data_dir, **{**FAST, **env}), cwd=str(ROOT))
    async with Client(params, mode="legacy" if legacy else "auto", read_timeout_seconds=120, message_handler=heard,
                      cache=None) as client:
        yield client


def cli(data_dir: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `mcp-foundry ARGS` against a data dir."""
    return subprocess.run([*FOUNDRY, *args], cwd=ROOT, env=foundry_env(data_dir, **env), capture_output=True,
                          text=True, timeout=timeout)


def text(result: types.CallToolResult) -> str:
    """The text of a tool result's first content block."""
    return result.content[0].text if result.content else ""


def value(result: types.CallToolResult):
    """A successful tool result's value: structured content's "result", else the parsed text."""
    assert not result.is_error, text(result)
    if result.structured_content is not None:
        return result.structured_content.get("result", result.structured_content)
    return json.loads(text(result))


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid` (a process this test started), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                cmd = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            out.append((child, cmd))
            todo.append(child)
    return out


def foundry_children_running(marker: str) -> list[int]:
    """Pids of processes below this test process whose command line contains `marker`."""
    return [pid for pid, cmd in descendants(os.getpid()) if marker in cmd]


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
