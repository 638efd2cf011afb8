"""One deployed server alone on the caller's stdio (`mcp-foundry run NAME`), under a small supervising parent.

The server's stdin, stdout and stderr are the caller's own descriptors, handed down: no
byte passes through this process. It stays only as the parent that owns the server's
sandbox (launch.served: a cgroup and a size-limited /tmp), which must outlive the server
and be removed after it, so it cannot simply exec the server. It forwards SIGINT, SIGTERM
and SIGHUP to the server, waits for it to end (a client closing stdin ends it), then
kills what the server left behind and removes the sandbox, and exits with the server's
status. If this parent is killed with SIGKILL, bubblewrap's --die-with-parent ends the
sandbox, and the next mcp-foundry start removes the cgroup and /tmp left behind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import anyio
import anyio.abc

from builder import deploy
from builder.config import Settings
from sandbox.backends.base import Backend
from sandbox.run import kill_tree
from server.gateway.launch import served

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def run_alone(manifest: deploy.Manifest, settings: Settings, backend: Backend) -> int:
    """Run one deployed version on this process's stdio until it ends; its exit status (128 + N for signal N)."""
    async with served(manifest, settings, backend) as box:
        # Listening before the server starts: a signal that came in between would end this parent without cleanup.
        with anyio.open_signal_receiver(*FORWARDED) as signals:
            process = await anyio.open_process(box.launch.argv, stdin=None, stdout=None, stderr=None,
                                               cwd=box.spec.workdir, env=box.launch.env, start_new_session=True)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_forward, signals, process)
                    await process.wait()
                    tg.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    kill_tree(process.pid)  # what it forked and left running; the cgroup's removal catches the rest
                    await process.wait()
    code = process.returncode if process.returncode is not None else -signal.SIGKILL
    return 128 - code if code < 0 else code


async def _forward(signals: AsyncIterator[int], process: anyio.abc.Process) -> None:
    """Pass the signals a client or a terminal sends `run` on to the server's process group."""
    async for signum in signals:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
