"""A server directory as untrusted input on the host: walked, read and copied without following links.

The syntax check, the requirements reader and the cases reader run on the host as the
foundry's user, before anything is sandboxed; so does the copy into the work dir. A link
planted in a server directory (`leak.py -> /root/secret`, `requirements.txt -> ~/.netrc`,
`x -> /proc/1/root`) must never be followed there: every file is opened relative to the
directory, component by component, with O_NOFOLLOW. Links are copied as links (inside the
sandbox one leading out points at nothing the sandbox shows), but a file the host must read
(Python source, requirements.txt, pyproject.toml, cases.json) may not be a link that leaves
the directory, and special files (FIFOs, sockets, devices) are refused.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox.errors import SandboxError

SKIPPED_DIRS = frozenset({"__pycache__", ".venv", "venv", ".git", "site-packages", ".mypy_cache", ".ruff_cache"})
"""Directories never read, scanned or copied: caches and environments, not the server's source."""
KERNEL_FS = ("/proc", "/sys", "/dev")
"""Kernel file systems: never a server directory or a cases file (their entries lead anywhere, e.g. /proc/1/root)."""
MAX_ENTRIES = 5000
"""Files, directories and links a server directory may hold."""
MAX_TREE_BYTES = 256 * 1024 * 1024
"""Total size of the regular files a server directory may hold."""
MAX_READ_BYTES = 8 * 1024 * 1024
"""Largest file read on the host (source, requirements, cases)."""
HOST_READ = frozenset({"requirements.txt", "pyproject.toml", "cases.json"})
"""Top-level files the foundry reads on the host (with every .py file): never read through a link."""

_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_FILE = _OPEN | os.O_NONBLOCK  # a FIFO must not block the open; it is refused after fstat anyway


class ServerDirError(SandboxError):
    """A server directory holds something the foundry will not read or copy (the message names the entry)."""


@dataclass(frozen=True)
class Entry:
    """One thing found in a server directory."""

    rel: PurePosixPath
    """Path relative to the directory."""
    kind: str
    """"file", "dir" or "link" (copied as a link, never followed)."""
    size: int = 0
    mode: int = 0o644
    target: str = ""
    """For a link: where it points, as written."""


def kernel_fs(path: Path | str) -> str | None:
    """The kernel file system (/proc, /sys, /dev) that `path` lies in, lexically and once resolved, else None."""
    candidates = [os.path.abspath(path)]
    try:
        candidates.append(os.path.realpath(path))
    except (OSError, ValueError):
        pass
    for candidate in candidates:
        for root in KERNEL_FS:
            if candidate == root or candidate.startswith(root + "/"):
                return root
    return None


def walk(directory: Path) -> list[Entry]:
    """Every entry below `directory` (skipping caches and venvs), without following links.

    Raises ServerDirError listing what is refused: a .py file that is a link out of the
    directory, a host-read file (HOST_READ) that is a link, special files, and trees beyond
    MAX_ENTRIES or MAX_TREE_BYTES.
    """
    entries: list[Entry] = []
    problems: list[str] = []
    total = 0
    for rel, info in _scan(directory, PurePosixPath()):
        if len(entries) >= MAX_ENTRIES:
            raise ServerDirError(f"{directory}: more than {MAX_ENTRIES} files and directories; a server directory "
                                 "holds the server's source, not data sets or environments")
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(directory / rel)
            leaves = _link_problem(rel, target)
            if str(rel) in HOST_READ:
                problems.append(f"{rel} is a symbolic link (to {target}); the foundry reads it on the host and never "
                                "through a link: put the file itself there")
            elif leaves and rel.suffix == ".py":
                problems.append(f"{rel} is a symbolic link to {target}, {leaves}; Python source is checked on the "
                                "host and never read through a link out of the server directory: put the file "
                                "itself there")
            else:
                entries.append(Entry(rel, "link", target=target))
        elif stat.S_ISDIR(info.st_mode):
            entries.append(Entry(rel, "dir", mode=stat.S_IMODE(info.st_mode)))
        elif stat.S_ISREG(info.st_mode):
            total += info.st_size
            entries.append(Entry(rel, "file", size=info.st_size, mode=stat.S_IMODE(info.st_mode)))
        else:
            problems.append(f"{rel} is a {_kind(info.st_mode)}, not a regular file; a server directory holds only "
                            "files, directories and links that stay inside it")
    if total > MAX_TREE_BYTES:
        problems.append(f"its files total {total // (1024 * 1024)} MiB, more than {MAX_TREE_BYTES // (1024 * 1024)} "
                        "MiB; keep data out of the server directory")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ServerDirError(f"server directory {directory}: " + "; ".join(problems[:3]) + more)
    return entries


def _scan(directory: Path, rel: PurePosixPath) -> Iterator[tuple[PurePosixPath, os.stat_result]]:
    try:
        with os.scandir(directory / rel) as listing:
            items = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        raise ServerDirError(f"{directory / rel}: cannot be listed ({exc.strerror or exc})") from None
    for item in items:
        if item.name in SKIPPED_DIRS or item.name.endswith(".pyc"):
            continue  # whatever they are (a venv may well be a link), they are not the server's source
        info = item.stat(follow_symlinks=False)
        yield rel / item.name, info
        if stat.S_ISDIR(info.st_mode):
            yield from _scan(directory, rel / item.name)


def _link_problem(rel: PurePosixPath, target: str) -> str | None:
    """Why a link is refused ("outside the server directory", ...), or None when it stays inside."""
    if os.path.isabs(target):
        return "an absolute path (outside the server directory)"
    resolved = os.path.normpath(os.path.join(str(rel.parent), target))
    if resolved == ".." or resolved.startswith("../"):
        return "outside the server directory"
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _open_inside(directory: Path, rel: PurePosixPath, flags: int, mode: int = 0) -> int:
    """Open `directory`/`rel` walking one component at a time with O_NOFOLLOW: no link is followed on the way."""
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise ServerDirError(f"{rel}: not a path inside the server directory")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts[:-1]:
            inner = os.open(part, _OPEN | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(rel.parts[-1], flags, mode, dir_fd=fd)
    finally:
        os.close(fd)


def read_bytes(directory: Path, rel: PurePosixPath | str, *, limit: int = MAX_READ_BYTES) -> bytes:
    """The content of a regular file inside `directory`, read without following any link.

    Raises FileNotFoundError when it does not exist, ServerDirError when it is a link, a
    special file or larger than `limit` bytes.
    """
    rel = PurePosixPath(rel)
    try:
        fd = _open_inside(directory, rel, _FILE)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ServerDirError(f"{directory / rel} is (or lies under) a symbolic link; the foundry reads server "
                                 "files without following links: put the file itself there") from None
        raise ServerDirError(f"{directory / rel}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ServerDirError(f"{directory / rel} is a {_kind(info.st_mode)}, not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ServerDirError(f"{directory / rel} is larger than {limit // 1024} KiB; the foundry reads no bigger "
                             "file on the host")
    return data


def read_file(path: Path, *, limit: int = MAX_READ_BYTES) -> bytes:
    """Read one file the caller named (a cases file): no link at its last component, no kernel FS, no special file."""
    path = Path(os.path.abspath(path))
    if kernel_fs(path):
        raise ServerDirError(f"{path} lies in {kernel_fs(path)}, a kernel file system; give an ordinary file")
    return read_bytes(path.parent, path.name, limit=limit)


def copy_tree(directory: Path, entries: list[Entry], dest: Path) -> None:
    """Copy walked `entries` of `directory` into `dest` (new or empty), re-reading each file without links.

    A file that turned into a link or grew past the walk's limits since it was walked is
    refused, so nothing outside the directory can slip in between the walk and the copy.
    """
    dest.mkdir(mode=0o755, exist_ok=True)
    budget = MAX_TREE_BYTES
    for entry in entries:
        out = dest / entry.rel
        if entry.kind == "dir":
            out.mkdir(mode=0o755)
        elif entry.kind == "link":
            os.symlink(entry.target, out)
        else:
            data = read_bytes(directory, entry.rel, limit=budget)
            budget -= len(data)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o755 if entry.mode & 0o111 else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)


def requirements_of(directory: Path | str) -> list[str]:
    """The requirements a server directory declares: requirements.txt lines, else pyproject [project].dependencies.

    Both are read without following links (see the module docstring).
    """
    directory = Path(directory)
    try:
        text = read_bytes(directory, "requirements.txt").decode("utf-8", errors="replace")
    except FileNotFoundError:
        pass
    else:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("-")]
    pyproject = directory / "pyproject.toml"
    try:
        raw = read_bytes(directory, "pyproject.toml").decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise SandboxError(f"{pyproject}: not valid TOML ({exc}); fix it or use requirements.txt") from exc
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SandboxError(f"{pyproject}: [project].dependencies must be a list of requirement strings")
    return list(deps)
