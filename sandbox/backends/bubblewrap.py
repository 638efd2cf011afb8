"""Bubblewrap backend: a read-only system, one writable work dir, no network, own PID namespace.

Limits are applied with util-linux `prlimit` inside the sandbox (it is in /usr/bin, which
is mounted anyway, and needs no interpreter). As root, RLIMIT_NPROC is not enforced for
uid 0 and a user namespace maps only uid 0, so bwrap runs WITHOUT --unshare-user and
`setpriv` drops to nobody (65534) just before the command; the work dir is handed to that
uid. RLIMIT_NPROC counts every process of that uid on the host, so concurrent sandboxes
would share one budget: when the spec joins a pids cgroup of its own (sandbox.limits),
that replaces it. As a normal user, --unshare-user is used and the limits apply to the
user directly. /tmp is the spec's tmp_dir (sharing the work dir's size limit), else a
private tmpfs of limits.disk_mb. The command's environment is bwrap's own (Launch.env, which
bwrap, prlimit and setpriv pass on unchanged), not `--setenv NAME VALUE`, which would show
every value, a declared secret's too, in `ps`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sandbox.backends.mounts import (
    NOBODY,
    check_readable_by,
    check_spec_paths,
    find_tool,
    hand_workdir_to,
    interpreter_roots,
)
from sandbox.limits.cgroups import join_argv
from sandbox.policy import launcher_env
from sandbox.spec import Launch, Limits, RunSpec

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# /etc is mounted file by file: enough for the dynamic linker, locale, users, TLS and
# name resolution, and nothing like shadow files or the builder's tool configuration.
_ETC = (
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/timezone", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf",
    "/etc/resolv.conf", "/etc/gai.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
    "/etc/crypto-policies", "/etc/mime.types", "/etc/os-release",
)


def prlimit_argv(prlimit: str, limits: Limits, *, nproc: bool = True) -> list[str]:
    """The `prlimit ... --` prefix that applies `limits` (soft = hard) to the command after it.

    `nproc=False` leaves RLIMIT_NPROC out, for a sandbox whose processes a pids cgroup counts.
    """
    mib = 1024 * 1024
    return [
        prlimit,
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_mb * mib}",
        *([f"--nproc={limits.processes}"] if nproc else []),
        f"--fsize={limits.file_size_mb * mib}",
        "--core=0",
        "--",
    ]


class BubblewrapBackend:
    """Isolation with bubblewrap; the default on Linux where `bwrap` really runs."""

    name = "bubblewrap"
    isolates = True

    def __init__(self, bwrap: str | None = None) -> None:
        """Use the given bwrap binary, or the one found on PATH."""
        self._bwrap = bwrap or find_tool("bwrap")
        self._prlimit = find_tool("prlimit")
        self._setpriv = find_tool("setpriv")
        self._as_root = os.geteuid() == 0
        self._probe: tuple[bool, str] | None = None
        self._sized_tmpfs: bool | None = None

    def available(self) -> tuple[bool, str]:
        """Run `true` in a minimal sandbox once: having the binary is not enough (user namespaces may be off)."""
        if self._probe is None:
            self._probe = self._run_probe()
        return self._probe

    def _run_probe(self) -> tuple[bool, str]:
        missing = [tool for tool, path in (("bwrap", self._bwrap), ("prlimit", self._prlimit)) if not path]
        if self._as_root and not self._setpriv:
            missing.append("setpriv")
        if missing:
            return False, f"not found on PATH: {', '.join(missing)} (install bubblewrap and util-linux)"
        argv = [self._bwrap, *self._namespace_args(network=False), *self._system_args(), "--", "true"]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{self._bwrap} could not start a sandbox: {exc}"
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-300:]
            return False, f"{self._bwrap} failed to start a sandbox (exit {done.returncode}): {tail}"
        mode = "as root, dropping to uid 65534" if self._as_root else "in a user namespace"
        return True, f"{self._bwrap} runs sandboxes ({mode})"

    def _namespace_args(self, *, network: bool) -> list[str]:
        args = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try"]
        if not network:
            args.append("--unshare-net")
        if not self._as_root:
            args.append("--unshare-user")
        return args

    @staticmethod
    def _system_args() -> list[str]:
        args: list[str] = []
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in _ETC:
            args += ["--ro-bind-try", path, path]
        return args + ["--proc", "/proc", "--dev", "/dev"]

    def launch(self, argv: list[str], spec: RunSpec) -> Launch:
        """A bwrap launch running `argv` in spec.workdir with spec.env, as nobody when the builder is root.

        Side effect when root: spec.workdir is chowned (recursively) to uid 65534 so the
        sandboxed code can write there.
        """
        if not self._bwrap or not self._prlimit:
            raise NotImplementedError(f"bubblewrap backend is unusable here: {self.available()[1]}")
        check_spec_paths(spec)
        env = launcher_env(spec.env)
        workdir = spec.workdir
        readonly = [*interpreter_roots(argv, spec.readonly_paths), *spec.readonly_paths]
        if self._as_root:
            check_readable_by(NOBODY, spec.readonly_paths)
            hand_workdir_to(NOBODY, workdir)

        args = [self._bwrap, *self._namespace_args(network=spec.network), *self._system_args()]
        # Hidden places: a private /tmp, and empty dirs over /root and the builder's HOME.
        hidden = ["/tmp", "/root"]
        builder_home = os.environ.get("HOME", "")
        if builder_home.startswith("/") and builder_home != "/" and builder_home not in hidden:
            hidden.append(builder_home)
        if spec.tmp_dir is not None:
            args += ["--bind", str(spec.tmp_dir), "/tmp"]
        else:
            size = ["--size", str(spec.limits.disk_mb * 1024 * 1024)] if self._can_size_tmpfs() else []
            args += [*size, "--perms", "1777", "--tmpfs", "/tmp"]
        args += ["--perms", "0755", "--tmpfs", "/root"]
        for path in hidden[2:]:
            args += self._dirs_for(Path(path), made=set(map(Path, hidden)), bound=[]) + ["--tmpfs", path]
        child_home = spec.env.get("HOME")
        if child_home and Path(child_home).is_relative_to("/tmp"):
            args += ["--perms", "0777", "--dir", child_home]

        # Parents before children, so a read-only tree may contain the work dir or the reverse.
        mounts = sorted({(p, True) for p in readonly} | {(workdir, False)}, key=lambda m: len(m[0].parts))
        made = {Path("/"), *map(Path, hidden)}
        bound = [Path(d) for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
        for path, ro in mounts:
            if any(path.is_relative_to(b) for b in bound) and ro:
                continue  # already visible read-only
            args += self._dirs_for(path, made=made, bound=bound)
            args += ["--ro-bind" if ro else "--bind", str(path), str(path)]
            bound.append(path)
        nproc = "pids" not in spec.cgroup_controllers
        args += ["--chdir", str(workdir), "--", *prlimit_argv(self._prlimit, spec.limits, nproc=nproc)]
        if self._as_root:
            args += [self._setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        return Launch(argv=join_argv(spec.cgroup_procs, args + list(argv)), env=env)

    def _can_size_tmpfs(self) -> bool:
        """bwrap 0.8 and later size a tmpfs (--size); older ones would refuse the option."""
        if self._sized_tmpfs is None:
            try:
                shown = subprocess.run([self._bwrap or "bwrap", "--help"], capture_output=True, timeout=10)
                self._sized_tmpfs = b"--size" in shown.stdout + shown.stderr
            except (OSError, subprocess.TimeoutExpired):
                self._sized_tmpfs = False
        return self._sized_tmpfs

    @staticmethod
    def _dirs_for(path: Path, *, made: set[Path], bound: list[Path]) -> list[str]:
        """`--dir` for each missing ancestor of `path`, world-traversable (bwrap would make them 0700)."""
        args: list[str] = []
        for parent in reversed(path.parents):
            if parent in made or any(parent.is_relative_to(b) for b in bound):
                continue
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
        return args
