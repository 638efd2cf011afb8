"""Paths a sandbox must make visible, shared by the backends that mount things (bubblewrap, docker)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.spec import RunSpec

NOBODY = 65534
"""uid and gid sandboxed code runs as when the builder is root (so RLIMIT_NPROC applies)."""


def python_prefix(interpreter: Path) -> Path | None:
    """The installation prefix of the real interpreter behind `interpreter` (following venv symlinks).

    A venv made by uv links bin/python to its base interpreter (for instance under
    ~/.pyenv), so the base prefix must be mounted even though HOME is hidden.
    """
    real = interpreter.resolve()
    if real.parent.name != "bin" or not real.name.startswith("python"):
        return None
    return real.parent.parent


def _venv_interpreter(path: Path) -> Path | None:
    candidate = path / "bin" / "python"
    return candidate if (path / "pyvenv.cfg").is_file() and candidate.exists() else None


def interpreter_roots(argv: list[str], readonly_paths: Iterable[Path]) -> list[Path]:
    """Prefixes of every Python interpreter the run needs: argv[0] if it is one, and each venv in readonly_paths."""
    interpreters: list[Path] = []
    if argv and os.path.isabs(argv[0]) and os.path.exists(argv[0]):
        interpreters.append(Path(argv[0]))
    interpreters += [py for path in readonly_paths if (py := _venv_interpreter(path)) is not None]
    roots: list[Path] = []
    for interpreter in interpreters:
        prefix = python_prefix(interpreter)
        if prefix is not None and prefix not in roots:
            roots.append(prefix)
    return roots


def check_spec_paths(spec: RunSpec) -> None:
    """Refuse a spec whose paths cannot be mounted: they must be absolute and exist."""
    if not spec.workdir.is_absolute() or not spec.workdir.is_dir():
        raise SandboxError(
            f"RunSpec.workdir={str(spec.workdir)!r} must be an absolute path to an existing directory"
        )
    for path in spec.readonly_paths:
        if not path.is_absolute() or not path.exists():
            raise SandboxError(
                f"RunSpec.readonly_paths entry {str(path)!r} must be an absolute path that exists"
            )


def check_readable_by(uid: int, paths: Iterable[Path]) -> None:
    """Refuse read-only mounts that `uid` could not read, with a message instead of a later EACCES."""
    for path in paths:
        info = path.stat()
        need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else 0)
        if info.st_uid != uid and info.st_mode & need != need:
            raise SandboxError(
                f"RunSpec.readonly_paths entry {str(path)!r} (mode {oct(info.st_mode & 0o777)}) is not readable "
                f"by uid {uid}, which sandboxed code runs as; make it world-readable (chmod o+rX)"
            )


def hand_workdir_to(uid: int, workdir: Path) -> None:
    """Give the work dir (recursively) to `uid`, the only place sandboxed code may write."""
    os.chown(workdir, uid, uid)
    for dirpath, dirnames, filenames in os.walk(workdir):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def find_tool(name: str) -> str | None:
    """Absolute path of a helper binary, looked up on PATH and then in the usual system dirs."""
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
