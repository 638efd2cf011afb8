"""Fixtures: small input files (a spreadsheet, an image) a server directory makes for its own cases.

A server directory may hold `fixtures.py`. Before the server starts, the validator runs it in the
same sandbox as the server (same environment, same limits, never any network), in the same working
directory, with an empty `fixtures/` directory to write into. Cases then refer to those files by
name (see sandbox.cases: {"$fixture": "sample.xlsx"}), so an xlsx reader or an image resizer gets
real inputs.

Files are read back on the host without following links: fixtures.py is untrusted code, and a
link it plants (to a key in the builder's home) must not put that file's content into a call.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
from pathlib import Path

from sandbox.backends.base import Backend
from sandbox.cases import FIXTURES_DIR
from sandbox.errors import SandboxError
from sandbox.report import FailureClass
from sandbox.run import RunResult, run_sandboxed
from sandbox.spec import RunSpec

FIXTURES_SCRIPT = "fixtures.py"
FIXTURES_SECONDS = 60.0
"""Longest a fixtures script may run (within the validation's own wall-clock limit)."""
MAX_INLINE_BYTES = 4 * 1024 * 1024
"""Largest fixture passed as content ("base64" or "text"); pass a bigger one by path."""
MAX_LISTED = 200


class FixtureError(SandboxError):
    """A fixture reference cannot be resolved; the message says which and what exists."""


class Fixtures:
    """The regular files fixtures.py left in fixtures/, resolved by name."""

    def __init__(self, directory: Path, files: dict[str, int]):
        self.directory = directory
        """Absolute path of fixtures/ (the same path inside every backend's sandbox)."""
        self.files = files
        """File name -> size in bytes."""

    @classmethod
    def collect(cls, workdir: Path) -> Fixtures:
        """What fixtures/ holds: regular files only (links and directories are not fixtures)."""
        directory = workdir / FIXTURES_DIR
        files: dict[str, int] = {}
        st = os.lstat(directory) if os.path.lexists(directory) else None
        if st is not None and stat.S_ISDIR(st.st_mode):
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) and len(files) < MAX_LISTED:
                        files[entry.name] = entry.stat(follow_symlinks=False).st_size
        return cls(directory, dict(sorted(files.items())))

    def describe(self) -> str:
        """`sample.xlsx (5.1 KiB), tiny.png (68 B)` or `no files`."""
        if not self.files:
            return "no files"
        return ", ".join(f"{name} ({_size(n)})" for name, n in self.files.items())

    def resolve(self, name: str, form: str) -> str:
        """The argument value a reference stands for: the file's path, or its content in base64 or as text."""
        if name not in self.files:
            made = ", ".join(self.files) or "nothing"
            raise FixtureError(f"fixture {name!r} was not made: fixtures.py wrote {made} into {FIXTURES_DIR}/")
        if form == "path":
            return str(self.directory / name)
        data = self._read(name)
        if form == "base64":
            return base64.b64encode(data).decode("ascii")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FixtureError(f'fixture {name!r} is not UTF-8 text (byte {exc.start}); pass it "as": "base64" '
                               'or "as": "path"') from exc

    def _read(self, name: str) -> bytes:
        flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                fd = os.open(name, flags, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise FixtureError(f"fixture {name!r} cannot be read as a plain file ({exc.strerror}); "
                               "fixtures.py must write regular files, not links") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FixtureError(f"fixture {name!r} is not a regular file")
            if st.st_size > MAX_INLINE_BYTES:
                raise FixtureError(f"fixture {name!r} is {_size(st.st_size)}; at most {_size(MAX_INLINE_BYTES)} is "
                                   'passed as content, pass a bigger one "as": "path"')
            with os.fdopen(fd, "rb") as f:
                fd = -1
                return f.read(MAX_INLINE_BYTES + 1)
        finally:
            if fd >= 0:
                os.close(fd)


async def make(python: Path, spec: RunSpec, backend: Backend,
               local_modules: set[str]) -> tuple[Fixtures | None, FailureClass | None, str, float]:
    """Run fixtures.py as `spec` runs the server, but never with network and for at most FIXTURES_SECONDS.

    Returns what it made (None when it failed), the failure class, a one-line reason and the seconds taken.
    """
    prepare(spec.workdir)
    limits = spec.limits.model_copy(update={"wall_seconds": min(spec.limits.wall_seconds, FIXTURES_SECONDS)})
    run = await run_sandboxed([str(python), FIXTURES_SCRIPT], spec.model_copy(update={"network": False,
                                                                                       "limits": limits}), backend)
    if run.returncode != 0 or run.timed_out:
        klass, reason = failure(run, local_modules)
        return None, klass, reason, run.duration_s
    made = Fixtures.collect(spec.workdir)
    return made, None, f"fixtures.py made {made.describe()}", run.duration_s


def prepare(workdir: Path) -> None:
    """Give fixtures.py an empty fixtures/ to write into (anything the directory brought there is replaced)."""
    target = workdir / FIXTURES_DIR
    if os.path.lexists(target):
        if os.path.islink(target) or not target.is_dir():
            target.unlink()
        else:
            shutil.rmtree(target)
    target.mkdir()


def failure(result: RunResult, local_modules: set[str]) -> tuple[FailureClass, str]:
    """Why fixtures.py did not succeed, classified like a server that fails to start."""
    stderr = result.stderr.strip()
    tail = " | ".join(stderr.splitlines()[-3:])[-600:] or "(no stderr)"
    if result.timed_out:
        return "timeout", (f"fixtures.py did not finish within {FIXTURES_SECONDS:g} s; make small files, and "
                           "make them without the network")
    missing = re.findall(r"^ModuleNotFoundError: No module named '([^']+)'", stderr, re.MULTILINE)
    if missing:
        top = missing[-1].split(".")[0]
        if top not in local_modules:
            return "dependency", (f"fixtures.py: missing dependency: No module named '{missing[-1]}'; add the "
                                  "distribution that provides it to requirements.txt (fixtures.py runs in the "
                                  "server's environment)")
        return "import", f"fixtures.py fails to import: {tail}"
    if re.search(r"^(ImportError|SyntaxError)", stderr, re.MULTILINE):
        return "import", f"fixtures.py fails to import: {tail}"
    return "runtime", f"fixtures.py exited with code {result.returncode}: {tail}"


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"
