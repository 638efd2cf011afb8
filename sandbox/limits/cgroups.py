"""A cgroup per sandbox: its memory, its processes and its CPU time, apart from every other sandbox's.

All sandboxes run as uid 65534, so RLIMIT_NPROC (counted per uid) is one budget they
share, and RLIMIT_AS bounds each process but not how many there are. A cgroup of its own
bounds the sandbox as a whole. Both hierarchies are handled: cgroup v2 (one tree, the
controllers enabled in the parent's cgroup.subtree_control) and v1 (one tree per
controller, e.g. /sys/fs/cgroup/memory); on hybrid machines each controller is taken from
the tree where it is usable. Sandbox cgroups are made below the foundry's own cgroup, in
a directory `mcp-foundry`, and named `sb-<pid namespace>-<pid>-<start time>-<random>`
after their owner, so that those of a process that died (kill -9) can be told apart and
removed, and those of another pid namespace (whose pids mean nothing here) are left alone.

The CPU scheduler weighs a cgroup as one entity against its siblings: `mcp-foundry` as a
whole would weigh as much as one process of the machine, so that every sandbox inside
shared one process's turn and started slower the more sandboxes ran (a mounted server
twice as slow to answer initialize on a busy machine). Its weight is therefore kept at
one process's per sandbox cgroup in it, set again whenever one is made or removed.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sandbox.errors import SandboxError

CONTROLLERS = ("memory", "pids", "cpu")
"""The controllers a sandbox cgroup uses."""
GROUP_DIR = "mcp-foundry"
"""Directory below the foundry's own cgroup that holds every sandbox cgroup."""
CPU_PERIOD_US = 100_000
CPU_WEIGHT = {1: ("cpu.shares", 1024, 262_144), 2: ("cpu.weight", 100, 10_000)}
"""cgroup version -> (weight file, one process's weight, the largest weight)."""

# Joins the cgroups named before "--", then becomes the command after it: nothing of the sandbox runs outside.
_JOIN = 'while [ "$1" != -- ]; do echo "$$" > "$1" || { echo "sandbox: cannot join cgroup $1" >&2; exit 125; }; ' \
        'shift; done; shift; exec "$@"'


@dataclass(frozen=True)
class CgroupSupport:
    """Where sandbox cgroups can be made on this machine, per controller, and why not where they cannot."""

    bases: dict[str, Path] = field(default_factory=dict)
    """controller -> the `mcp-foundry` directory its sandbox cgroups go in."""
    versions: dict[str, int] = field(default_factory=dict)
    """controller -> 1 or 2."""
    missing: dict[str, str] = field(default_factory=dict)
    """controller -> why it cannot be used here."""

    def describe(self, controller: str) -> str:
        """One line for `doctor`: the controller's hierarchy, or why it is not usable."""
        if controller in self.bases:
            return f"cgroup v{self.versions[controller]} {controller} ({self.bases[controller]})"
        return f"no {controller} cgroup: {self.missing.get(controller, 'not found')}"


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every cgroup mount seen by this process."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fstype, _source, super_options = (right.split() + ["", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            mount_point = left.split()[4].replace("\\040", " ")
            found.append((mount_point, fstype, set(super_options.split(",")) | set(left.split()[5].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """controller (or "" for the v2 tree) -> this process's cgroup path in that hierarchy."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


@lru_cache(maxsize=1)
def detect() -> CgroupSupport:
    """Which controllers can give each sandbox a cgroup of its own here (looked at once per process)."""
    support = CgroupSupport()
    mounts, own = _mounts(), _own_paths()
    v2 = next((m for m in mounts if m[1] == "cgroup2"), None)
    v2_available = set()
    if v2 is not None:
        try:
            v2_available = set(Path(v2[0], "cgroup.controllers").read_text().split())
        except OSError:
            pass
    for controller in CONTROLLERS:
        if controller in v2_available and v2 is not None:
            _try_v2(support, controller, Path(v2[0]), own.get("", "/"))
            continue
        v1 = next((m for m in mounts if m[1] == "cgroup" and controller in m[2]), None)
        if v1 is None:
            support.missing[controller] = "the machine mounts no cgroup hierarchy with this controller"
            continue
        own_path = own.get(controller, "/")
        _try_base(support, controller, 1, Path(v1[0]) / own_path.lstrip("/") / GROUP_DIR)
    return support


def _try_v2(support: CgroupSupport, controller: str, mount: Path, own: str) -> None:
    parent = mount / own.lstrip("/")
    base = parent / GROUP_DIR
    try:
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if controller not in enabled:
            # Fails with EBUSY when the foundry's own cgroup holds processes ("no internal processes" rule).
            (parent / "cgroup.subtree_control").write_text(f"+{controller}")
        base.mkdir(exist_ok=True)
        if controller not in set((base / "cgroup.subtree_control").read_text().split()):
            (base / "cgroup.subtree_control").write_text(f"+{controller}")
    except OSError as exc:
        support.missing[controller] = (f"cgroup v2: {controller} cannot be enabled below {parent} ({exc.strerror or exc}); "
                                       "run mcp-foundry in a cgroup delegated to it (e.g. systemd-run --scope -p "
                                       "Delegate=yes) or as root")
        return
    support.bases[controller], support.versions[controller] = base, 2


def _try_base(support: CgroupSupport, controller: str, version: int, base: Path) -> None:
    try:
        base.mkdir(exist_ok=True)
        if not os.access(base, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        support.missing[controller] = (f"cgroup v{version}: cannot create {base} ({exc.strerror or exc}); "
                                       "sandbox cgroups need root or a delegated hierarchy")
        return
    support.bases[controller], support.versions[controller] = base, version


def _proc_start(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def owner_tag() -> str:
    """`<pid namespace>-<pid>-<start time>` of this process: a recycled pid cannot pass for it."""
    return f"{_pid_namespace()}-{os.getpid()}-{_proc_start(os.getpid()) or 0}"


def owner_gone(tag: str) -> bool:
    """True when the process a tag names is known to have ended (False for another pid namespace's tags)."""
    namespace, _, rest = tag.partition("-")
    pid, _, start = rest.partition("-")
    if namespace != _pid_namespace() or not pid.isdigit():
        return False
    return _proc_start(int(pid)) != start


class SandboxCgroup:
    """The cgroup(s) of one sandbox, one per usable controller; made by `create`, emptied and removed by `remove`."""

    def __init__(self, support: CgroupSupport, name: str) -> None:
        """Name the cgroups; nothing is created until `create`."""
        self.name = name
        self.dirs = {c: base / name for c, base in support.bases.items()}
        self.versions = dict(support.versions)

    @classmethod
    def create(cls, support: CgroupSupport, *, memory_mb: int, processes: int, cpus: float) -> SandboxCgroup:
        """Make the sandbox's cgroups with their limits; SandboxError naming the file that could not be written."""
        group = cls(support, f"sb-{owner_tag()}-{secrets.token_hex(4)}")
        try:
            for controller, path in group.dirs.items():
                path.mkdir()
                v2 = group.versions[controller] == 2
                if controller == "memory":
                    _write(path / ("memory.max" if v2 else "memory.limit_in_bytes"), memory_mb * 1024 * 1024)
                    swap = path / ("memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
                    if swap.exists():  # no swap either, or the limit could be dodged by swapping out
                        _write(swap, 0 if v2 else memory_mb * 1024 * 1024)
                elif controller == "pids":
                    _write(path / "pids.max", processes)
                elif controller == "cpu":
                    quota = max(1000, int(cpus * CPU_PERIOD_US))
                    if v2:
                        _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
                    else:
                        _write(path / "cpu.cfs_period_us", CPU_PERIOD_US)
                        _write(path / "cpu.cfs_quota_us", quota)
        except OSError as exc:
            group.remove()
            raise SandboxError(f"could not set up the sandbox cgroup {group.name}: {exc}; set "
                               "MCP_FOUNDRY_SANDBOX_CGROUPS=off to run without per-sandbox cgroups") from exc
        group.reweigh()
        return group

    def reweigh(self) -> None:
        """Give the directory of sandbox cgroups one process's CPU weight per sandbox cgroup it holds now.

        Every process making or removing one sets it again from what it sees, so a value
        written in a race is corrected by the next change.
        """
        path = self.dirs.get("cpu")
        if path is None:
            return
        name, one, most = CPU_WEIGHT[self.versions["cpu"]]
        try:
            count = sum(1 for p in path.parent.iterdir() if p.name.startswith("sb-"))
            _write(path.parent / name, min(most, one * max(1, count)))
        except OSError:
            pass  # the default weight: slower under load, never wrong

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """The cgroup.procs file of each of the sandbox's cgroups (what a process writes its pid to, to join)."""
        return tuple(path / "cgroup.procs" for path in self.dirs.values())

    def pids(self) -> list[int]:
        """Processes in the sandbox's cgroups now."""
        found: set[int] = set()
        for path in self.dirs.values():
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except OSError:
                continue
        return sorted(found)

    def memory_peak_mb(self) -> float | None:
        """The most memory the sandbox used at once, MiB (None without a memory cgroup)."""
        path = self.dirs.get("memory")
        if path is None:
            return None
        name = "memory.peak" if self.versions["memory"] == 2 else "memory.max_usage_in_bytes"
        try:
            return int((path / name).read_text()) / (1024 * 1024)
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL everything in the sandbox's cgroups, even what left its process group."""
        for path in self.dirs.values():
            if (path / "cgroup.kill").exists():
                try:
                    (path / "cgroup.kill").write_text("1")
                except OSError:
                    pass
        for _ in range(20):  # new processes may be forked while we look
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def remove(self, wait_s: float = 2.0) -> bool:
        """Kill what is left and remove the cgroups; False when one could not be removed in `wait_s`."""
        self.kill()
        deadline = time.monotonic() + wait_s
        left = [path for path in self.dirs.values() if path.exists()]
        while left:
            for path in list(left):
                try:
                    path.rmdir()
                    left.remove(path)
                except FileNotFoundError:
                    left.remove(path)
                except OSError:  # EBUSY while killed processes are still exiting
                    pass
            if left:
                if time.monotonic() > deadline:
                    return False
                self.kill()
                time.sleep(0.005)
        self.reweigh()
        return True


def _write(path: Path, value: object) -> None:
    with open(path, "w") as handle:  # one write, as the kernel expects for a control file
        handle.write(str(value))


def join_argv(procs_files: tuple[Path, ...], argv: list[str]) -> list[str]:
    """An argv that joins the cgroups (`procs_files`) and then execs `argv`, so nothing runs outside them."""
    if not procs_files:
        return list(argv)
    return ["/bin/sh", "-c", _JOIN, "mcpf-join", *map(str, procs_files), "--", *argv]


def clean_stale(support: CgroupSupport | None = None) -> list[str]:
    """Remove the sandbox cgroups of mcp-foundry processes that died; returns their names."""
    support = support or detect()
    removed: list[str] = []
    stale: dict[str, SandboxCgroup] = {}
    for base in support.bases.values():
        try:
            names = [p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("sb-")]
        except OSError:
            continue
        for name in names:
            if owner_gone("-".join(name.split("-")[1:4])):
                stale.setdefault(name, SandboxCgroup(support, name))
    for name, group in stale.items():
        if group.remove(wait_s=0.5):
            removed.append(name)
    return removed
