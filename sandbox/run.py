"""Run one command through a backend with a wall-clock timeout, capped output and a whole-tree kill."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from pydantic import BaseModel

from sandbox.backends.base import Backend
from sandbox.limits import confined
from sandbox.spec import Launch, RunSpec

# How long output pipes may stay open after the main process exited and its tree was killed.
_DRAIN_GRACE_S = 1.0


class RunResult(BaseModel):
    """What one sandboxed run did."""

    returncode: int
    """Exit status; negative = killed by that signal. Under bubblewrap a signal death reads as 128 + signal."""
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    killed_by: str | None = None
    """Why we killed it ("timeout", "cancelled"), or the signal that ended it ("SIGXCPU", "signal 40"), else None."""
    truncated: bool = False
    """True when stdout or stderr went over max_output bytes and the rest was dropped."""


def _tree(pid: int) -> list[int]:
    """Processes started by `pid`: its descendants, and members of its session even once orphaned (via /proc)."""
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # The command name may contain spaces and parentheses: the fields follow the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        ppid, pgrp, session = int(fields[1]), int(fields[2]), int(fields[3])
        children.setdefault(ppid, []).append(int(entry.name))
        if pid in (pgrp, session) and int(entry.name) != pid:
            found.add(int(entry.name))
    todo = [pid, *found]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def kill_tree(pid: int) -> None:
    """SIGKILL the session/process group led by `pid` and every descendant, even ones that left the group."""
    for _ in range(10):  # a fork bomb keeps making new ones while we look
        targets = _tree(pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for target in targets:
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not targets:
            return


def _signal_name(number: int) -> str:
    """"SIGTERM" for 15; real-time signals have no name of their own, so "signal 40"."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


async def _collect(stream: ByteReceiveStream | None, sink: bytearray, limit: int, flags: dict) -> None:
    if stream is None:
        return
    async for chunk in stream:
        room = limit - len(sink)
        if len(chunk) > room:
            flags["truncated"] = True
        if room > 0:
            sink += chunk[:room]
        # Past the cap we keep reading and dropping, so the child never blocks on a full pipe.


async def _feed(stream: ByteSendStream | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the child exited without reading everything: its exit status tells the story
    finally:
        await stream.aclose()


async def run_sandboxed(
    argv: Sequence[str],
    spec: RunSpec,
    backend: Backend,
    *,
    stdin: bytes | None = None,
    max_output: int = 1_000_000,
) -> RunResult:
    """Run `argv` under `backend` as `spec` says, in a cgroup of its own where the machine allows (sandbox.limits).

    The whole tree is killed on timeout or cancellation, and whatever is left in the
    sandbox's cgroup when it ends.
    """
    async with confined(backend, spec) as box:
        return await _run(backend.launch(list(argv), box.spec), box.spec, stdin, max_output)


async def _run(launch: Launch, spec: RunSpec, stdin: bytes | None, max_output: int) -> RunResult:
    started = time.monotonic()
    process = await anyio.open_process(
        launch.argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=launch.env,  # exactly the sandbox's: nothing of the builder's environment, and no value in argv
        start_new_session=True,  # its own process group, so the kill reaches what it forked
    )
    out, err, flags = bytearray(), bytearray(), {"truncated": False}
    killed_by: str | None = None
    readers_done = anyio.Event()

    async def read_both() -> None:
        async with anyio.create_task_group() as readers:
            readers.start_soon(_collect, process.stdout, out, max_output, flags)
            readers.start_soon(_collect, process.stderr, err, max_output, flags)
        readers_done.set()

    try:
        with anyio.move_on_after(spec.limits.wall_seconds) as deadline:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_both)
                if stdin is not None:
                    tg.start_soon(_feed, process.stdin, stdin)
                await process.wait()
                # The run owns what it started: leftovers would hold the pipes open and outlive it.
                kill_tree(process.pid)
                # Something that escaped the kill (only possible without a PID namespace) may
                # still hold a pipe: stop reading after a grace period rather than hang.
                with anyio.move_on_after(_DRAIN_GRACE_S):
                    await readers_done.wait()
                tg.cancel_scope.cancel()
        if deadline.cancelled_caught:
            killed_by = "timeout"
    except BaseException:
        killed_by = "cancelled"
        raise
    finally:
        if process.returncode is None or killed_by is not None:
            kill_tree(process.pid)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
    if killed_by is None and returncode < 0:
        killed_by = _signal_name(-returncode)
    return RunResult(
        returncode=returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        timed_out=killed_by == "timeout",
        duration_s=time.monotonic() - started,
        killed_by=killed_by,
        truncated=flags["truncated"],
    )
