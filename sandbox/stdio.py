"""A stdio transport for a server under test that keeps what a real client would choke on.

The SDK's client transport drops unparsable stdout lines; here each non-JSON-RPC line is
recorded as noise (a stray print breaks real clients' handshakes) and stderr is kept for
the report.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import Process
from mcp.shared.message import SessionMessage

from sandbox.run import kill_tree
from sandbox.spec import Launch

STDERR_KEEP = 64 * 1024
"""Bytes of stderr kept in memory."""
STDOUT_LINE_MAX = 32 * 1024 * 1024
"""A stdout line longer than this without a newline is cut and reported as noise."""


class ServerIO:
    """The server process's side effects we judge it by: stdout noise, stderr, exit code."""

    def __init__(self) -> None:
        self.noise: list[str] = []
        self.noise_count = 0
        self.stderr = bytearray()
        self.process: Process | None = None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


@asynccontextmanager
async def stdio_transport(launch: Launch, cwd: Path, io: ServerIO) -> AsyncIterator[Any]:
    """Start `launch` and bridge its stdio to MCP message streams; stdout lines that are not JSON-RPC become noise."""
    # Exactly the launch's environment: run as a normal user, bubblewrap's pid 1 keeps it where the sandboxed
    # code can read it (/proc/1/environ), so nothing of the builder's may be in it.
    process = await anyio.open_process(launch.argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, cwd=cwd,
                                       start_new_session=True, env=launch.env)
    io.process = process
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)
    stdout_done = anyio.Event()

    async def pump_stdout() -> None:
        assert process.stdout is not None
        buffer = b""
        async with read_send:
            try:
                async for chunk in process.stdout:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for raw in lines:
                        await deliver(raw.decode("utf-8", errors="replace"), read_send, io)
                    if len(buffer) > STDOUT_LINE_MAX:  # a runaway line without newline must not eat memory
                        await deliver(buffer[:200].decode("utf-8", errors="replace"), read_send, io)
                        buffer = b""
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass
            if buffer:
                await deliver(buffer.decode("utf-8", errors="replace"), read_send, io)
            stdout_done.set()

    async def pump_stderr() -> None:
        assert process.stderr is not None
        try:
            async for chunk in process.stderr:
                io.stderr += chunk
                del io.stderr[:-STDERR_KEEP]
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass

    async def pump_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_recv:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the server stopped reading: let pending requests fail, not hang

    async def reap() -> None:
        # What the server started dies with it: a leftover child would hold stdout open, so the client
        # would wait for a reply from a server that has already exited.
        await process.wait()
        kill_tree(process.pid)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reap)
        tg.start_soon(pump_stdout)
        tg.start_soon(pump_stderr)
        tg.start_soon(pump_stdin)
        try:
            yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True):
                await stop_process(process)
                # Output flushed while exiting (a late print) still counts: let the stdout pump reach EOF.
                with anyio.move_on_after(1.0):
                    await stdout_done.wait()
            tg.cancel_scope.cancel()
            await write_send.aclose()


async def deliver(line: str, stream: Any, io: ServerIO) -> None:
    text = line.rstrip("\r")
    try:
        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValueError:
        io.noise_count += 1
        if len(io.noise) < 20:
            io.noise.append(text[:200])
        return
    try:
        await stream.send(SessionMessage(message))
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass  # the client has gone; keep reading so noise printed while exiting is still seen


async def stop_process(process: Process) -> None:
    """Close stdin (the MCP way to ask a stdio server to exit), then SIGTERM, then SIGKILL; then end its whole tree."""
    if process.stdin is not None:
        try:
            await process.stdin.aclose()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
    for sig, grace in ((None, 2.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
        if sig is not None and process.returncode is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        with anyio.move_on_after(grace):
            await process.wait()
        if process.returncode is not None:
            break
    kill_tree(process.pid)  # children that outlived it or left its process group
