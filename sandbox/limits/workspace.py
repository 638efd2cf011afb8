"""A sandbox's workspace: its work dir and its /tmp on one size-limited tmpfs, held by a lock while in use.

Layout under the parent directory (one per user, shared by every mcp-foundry process):
`<name>/` (the workspace: a tmpfs of `disk_mb` holding `work/` and `tmp/`), `<name>.lock`
(flock, held by the owner for as long as the workspace is used) and `.lock` (taken shared
while a workspace is being made, exclusively while stale ones are cleaned, so that a
workspace is never seen half-made). A workspace whose lock nobody holds was left by a
process that died (kill -9): it is unmounted and removed by the next `clean_stale`.

Mounting needs root (CAP_SYS_ADMIN); elsewhere the workspace is a plain directory and its
`disk` state says the size is not limited.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.flock import flocked

_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2


def default_parent() -> Path:
    """Where workspaces go unless told otherwise: a directory per user in the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"mcp-foundry-{os.getuid()}-sandboxes"


@dataclass(frozen=True)
class Workspace:
    """A sandbox's writable places on the host."""

    root: Path
    """The workspace directory (the tmpfs mount point when the size is limited)."""
    workdir: Path
    """root/work: the sandbox's work dir."""
    tmp: Path
    """root/tmp: shown as /tmp inside the sandbox."""
    limited: bool
    """True when work dir and /tmp share a tmpfs of the requested size."""
    detail: str
    """What limits the workspace, or why nothing does."""


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of `size_mb` at `path`; None on success, else why it could not be mounted."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    options = f"size={size_mb}m,mode=0755".encode()
    if _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        code = ctypes.get_errno()
        return f"mount(tmpfs) failed: {os.strerror(code)}"
    return None


def _unmount(path: Path) -> None:
    if os.path.ismount(path):
        _libc().umount2(str(path).encode(), _MNT_DETACH)


def _parent_lock(parent: Path, mode: int) -> AbstractContextManager[bool]:
    return flocked(os.open(parent / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), mode)


def _held(lock: Path) -> bool:
    """Whether some process holds the flock on `lock` (a missing lock file is held by nobody)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _remove(root: Path) -> None:
    _unmount(root)
    shutil.rmtree(root, ignore_errors=True)


def clean_stale(parent: Path | None = None) -> list[str]:
    """Remove the workspaces nobody holds (left by a process that died); returns their names.

    Skipped, not waited for, when another process is cleaning or making one right now.
    """
    parent = parent or default_parent()
    if not parent.is_dir():
        return []
    removed: list[str] = []
    trash: list[Path] = []
    with _parent_lock(parent, fcntl.LOCK_EX | fcntl.LOCK_NB) as locked:
        if not locked:
            return []
        for entry in parent.iterdir():
            if entry.name.startswith(".") or entry.suffix == ".lock":
                continue
            lock = parent / f"{entry.name}.lock"
            if _held(lock):
                continue
            # Out of sight first (a mount point cannot be renamed: unmount it), then removed outside the lock.
            _unmount(entry)
            target = parent / f".trash-{entry.name}"
            with suppress(OSError):
                os.rename(entry, target)
                trash.append(target)
                removed.append(entry.name)
            with suppress(FileNotFoundError):
                lock.unlink()
        for stray in parent.glob("*.lock"):  # a lock whose workspace is gone
            if not (parent / stray.stem).exists() and not _held(stray):
                with suppress(FileNotFoundError):
                    stray.unlink()
    for target in trash + [p for p in parent.glob(".trash-*") if p not in trash]:
        _remove(target)
    return removed


@contextmanager
def workspace(disk_mb: int, *, parent: Path | None = None, prefix: str = "sb") -> Iterator[Workspace]:
    """A fresh workspace of `disk_mb` (work dir and /tmp together), locked while in use, removed afterwards."""
    parent = parent or default_parent()
    try:
        parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create the sandbox directory {parent}: {exc.strerror or exc}") from None
    clean_stale(parent)
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
    root, lock = parent / name, parent / f"{name}.lock"
    with _parent_lock(parent, fcntl.LOCK_SH):  # a cleaner never sees the lock file before it is held
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        root.mkdir(mode=0o755)
    try:
        why_not = _mount_tmpfs(root, disk_mb)
        os.chmod(root, 0o755)  # the sandboxed uid must reach work/ through it
        (root / "work").mkdir()
        (root / "tmp").mkdir()
        os.chmod(root / "tmp", 0o1777)
        if why_not is None:
            detail = f"work dir and /tmp share a tmpfs of {disk_mb} MiB"
        else:
            detail = f"work dir not size-limited ({why_not}); only the per-file size limit applies"
        yield Workspace(root=root, workdir=root / "work", tmp=root / "tmp", limited=why_not is None, detail=detail)
    finally:
        _remove(root)
        with suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)
