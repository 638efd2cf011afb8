"""Is a worker alive? On this machine its pid and start time say so at once; elsewhere only its lease can."""

from __future__ import annotations

import functools
import socket
import time
from pathlib import Path

from builder.jobs.model import WorkerInfo


def proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (None if it does not exist or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


@functools.cache
def this_machine() -> tuple[str, str]:
    """(host name, boot id) of this machine; a pid is only meaningful where both match."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return socket.gethostname(), boot


def on_this_machine(worker: WorkerInfo) -> bool:
    """True when `worker`'s pid can be checked here (same host name and same boot)."""
    return (worker.host, worker.boot_id) == this_machine() and bool(worker.boot_id)


def alive(worker: WorkerInfo, now: float | None = None) -> bool:
    """Whether `worker` still runs: by pid and start time on this machine, else by its unexpired lease."""
    if on_this_machine(worker):
        return proc_start(worker.pid) == worker.proc_start
    return (now or time.time()) <= worker.heartbeat_at + worker.lease_s
