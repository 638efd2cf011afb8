"""What tests may watch of the machine's processes: the tree under a process they started, nothing else."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from builder.jobs import SqliteJobStore
from builder.jobs.procs import proc_start


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    return proc_start(pid) is not None


def descendants(root: int) -> set[int]:
    """Live processes below `root` (children, their children, ...), found by walking parent links."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def sandboxed(root: int) -> set[int]:
    """Processes of a running validation below `root` (their command lines name the validator's work dir)."""
    pids = set()
    for pid in descendants(root):
        try:
            if b"mcpf-validate-" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(pid)
        except OSError:
            continue
    return pids


def workers_of(data_dir: Path) -> list[tuple[int, str]]:
    """(pid, start time) of the live workers the job store of `data_dir` records."""
    db = data_dir / "jobs.sqlite3"
    if not db.exists():
        return []
    store = SqliteJobStore(db)
    try:
        return [(w.pid, w.proc_start) for w in store.workers()]
    finally:
        store.close()


def stop_workers(data_dir: Path, timeout: float = 10.0) -> None:
    """Stop the workers of `data_dir` by the pids its store records (SIGTERM, then SIGKILL), never by name."""
    for pid, start in workers_of(data_dir):
        if proc_start(pid) != start:
            continue  # gone already (and the pid may have been reused)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc_start(pid) == start and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc_start(pid) == start:
            os.kill(pid, signal.SIGKILL)
