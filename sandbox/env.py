"""Dependency environments: one uv venv per dependency set, built atomically, shared and reused.

Layout under `root`: envs/<key>/ (a finished venv with foundry-env.json inside),
envs/.build-<key>-<random>/ (a build in progress; never used), locks/<key>.lock (flock, held while
building or removing), locks/<key>.use (shared flock, held by every user of a finished env, see `in_use`),
uv-cache/ (unless UV_CACHE_DIR is set). The marker file is written last and the
directory renamed into place, so a venv at envs/<key> is always complete. Venvs are
made relocatable so the rename keeps their entry-point scripts working. The marker's
mtime records the last use, for cleanup.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from pathlib import Path

import anyio
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from sandbox.errors import EnvBuildError, SandboxError
from sandbox.flock import flocked
from sandbox.policy import SECRET_NAME_PATTERN

MARKER = "foundry-env.json"
"""File written last into a finished environment; its mtime is the time of last use."""


class Environment(BaseModel):
    """A ready dependency environment."""

    key: str
    """sha256 of the interpreter version and the normalized requirements."""
    path: Path
    """The venv directory; mount it read-only at this same path."""
    python: Path
    """The venv's interpreter (path/bin/python)."""
    requirements: list[str]
    """Normalized, sorted requirements."""
    created: bool
    """True when this call built it, False when an existing one was reused."""
    seconds: float
    """Time this call took (for list(): the original build time)."""


def normalize_requirements(requirements: Sequence[str]) -> list[str]:
    """PEP 508 requirements with PEP 503 names and canonical spacing, sorted and deduplicated."""
    if isinstance(requirements, str):
        raise EnvBuildError("requirements must be a list of strings, not one string (e.g. ['six==1.16.0'])")
    normalized = set()
    for index, text in enumerate(requirements):
        if not isinstance(text, str) or not text.strip():
            raise EnvBuildError(f"requirements[{index}]={text!r} is empty or not a string; expected e.g. 'six==1.16.0'")
        try:
            requirement = Requirement(text.strip())
        except InvalidRequirement as exc:
            raise EnvBuildError(
                f"requirements[{index}]={text!r} is not a valid PEP 508 requirement ({exc}); "
                "expected a name with an optional version, e.g. 'six==1.16.0' or 'httpx>=0.27'"
            ) from None
        requirement.name = canonicalize_name(requirement.name)
        normalized.add(str(requirement))
    return sorted(normalized)


async def _flock(fd: int, mode: int) -> None:
    """Take a flock (LOCK_SH or LOCK_EX) by polling, which keeps the wait cancellable and off the event loop."""
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await anyio.sleep(0.05)


def _size_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class EnvManager:
    """Creates, reuses and prunes uv venvs keyed by their dependency set."""

    def __init__(self, root: Path, *, python: str | None = None, uv: str | None = None,
                 only_binary: bool = True, install_timeout: float = 600.0) -> None:
        """Keep environments under `root`, built for `python` (default: this interpreter) with `uv`.

        `only_binary` refuses source distributions: building one runs arbitrary code from
        the package on the host, outside any sandbox, while installing a wheel does not.
        """
        self.root = Path(root)
        self.python = python or sys.executable
        if uv is None:
            from uv import find_uv_bin  # the uv package ships its binary

            uv = find_uv_bin()
        self.uv = uv
        self.only_binary = only_binary
        self.install_timeout = install_timeout
        self._envs = self.root / "envs"
        self._locks = self.root / "locks"
        self._python_tag: str | None = None

    # -- public API ---------------------------------------------------------------------------------------------
    async def ensure(self, requirements: Sequence[str], *, log: Callable[[str], None] | None = None) -> Environment:
        """Return the environment for `requirements`, building it first if no finished one exists."""
        started = time.monotonic()
        say = log or (lambda _message: None)
        reqs = normalize_requirements(requirements)
        key = await self.key_for(reqs)
        final = self._envs / key
        if (found := self._reuse(final, key, reqs, started)) is not None:
            return found
        async with self._locked(key):
            # Someone else may have built it while we waited for the lock.
            if (found := self._reuse(final, key, reqs, started)) is not None:
                return found
            self._clear_builds(key)  # we hold the lock, so any half-build of this key is abandoned
            build = self._envs / f".build-{key}-{secrets.token_hex(4)}"
            try:
                say(f"creating environment {key[:12]} for {len(reqs)} requirement(s)")
                await self._uv(["venv", "--relocatable", "--quiet", "--python", self.python, str(build)], reqs)
                if reqs:
                    say(f"installing {' '.join(reqs)}")
                    binary = ["--only-binary", ":all:"] if self.only_binary else []
                    await self._uv(["pip", "install", "--compile-bytecode", "--python", str(build / "bin" / "python"),
                                    *binary, *reqs], reqs)
                seconds = time.monotonic() - started
                (build / MARKER).write_text(json.dumps(
                    {"key": key, "requirements": reqs, "python": self._python_tag, "seconds": seconds}))
                if final.exists():  # not finished (no marker): leftover of an interrupted removal
                    shutil.rmtree(final)
                os.rename(build, final)
            except BaseException:
                shutil.rmtree(build, ignore_errors=True)
                raise
        say(f"environment {key[:12]} ready in {seconds:.1f}s")
        return Environment(key=key, path=final, python=final / "bin" / "python", requirements=reqs,
                           created=True, seconds=time.monotonic() - started)

    async def key_for(self, requirements: Sequence[str]) -> str:
        """The environment key of `requirements` for this manager's interpreter."""
        if self._python_tag is None:
            done = await anyio.run_process(
                [self.python, "-c", "import platform; print(platform.python_implementation(), platform.python_version())"],
                check=False)
            if done.returncode != 0:
                raise EnvBuildError(f"EnvManager python={self.python!r} does not run: {done.stderr.decode()[-300:]}")
            self._python_tag = done.stdout.decode().strip()
        payload = json.dumps({"python": self._python_tag, "requirements": normalize_requirements(requirements)})
        return hashlib.sha256(payload.encode()).hexdigest()

    def list(self) -> list[Environment]:
        """Every finished environment, most recently used first."""
        found = []
        for path in self._finished():
            info = json.loads((path / MARKER).read_text())
            found.append(Environment(key=path.name, path=path, python=path / "bin" / "python",
                                     requirements=info["requirements"], created=False, seconds=info["seconds"]))
        return found

    def cleanup(self, *, max_age_days: float | None = None, max_total_mb: float | None = None) -> list[str]:
        """Remove environments unused for max_age_days, then the least recently used until under max_total_mb.

        Environments being built, or held by a user through `in_use`, are skipped, and
        abandoned half-builds are removed. Returns the removed keys.
        """
        for name, value in (("max_age_days", max_age_days), ("max_total_mb", max_total_mb)):
            if value is not None and value < 0:
                raise SandboxError(f"cleanup: {name}={value} must be >= 0 (or None for no limit)")
        removed: list[str] = []
        oldest_first = list(reversed(self._finished()))
        if max_age_days is not None:
            cutoff = time.time() - max_age_days * 86400
            for path in oldest_first:
                if (path / MARKER).stat().st_mtime < cutoff and self._remove(path):
                    removed.append(path.name)
        if max_total_mb is not None:
            sizes = {path: _size_bytes(path) for path in oldest_first if path.name not in removed}
            total = sum(sizes.values())
            for path, size in sizes.items():
                if total <= max_total_mb * 1024 * 1024:
                    break
                if self._remove(path):
                    removed.append(path.name)
                    total -= size
        for build in self._envs.glob(".build-*"):
            self._remove_stale_builds(build.name.split("-")[1])
        for trash in self._envs.glob(".trash-*"):  # left by a removal that was interrupted
            shutil.rmtree(trash, ignore_errors=True)
        return removed

    # -- internals ----------------------------------------------------------------------------------------------
    def _finished(self) -> list[Path]:
        """Finished env dirs, most recently used first."""
        if not self._envs.is_dir():
            return []
        paths = [p for p in self._envs.iterdir() if not p.name.startswith(".") and (p / MARKER).is_file()]
        return sorted(paths, key=lambda p: (p / MARKER).stat().st_mtime, reverse=True)

    def _reuse(self, final: Path, key: str, reqs: list[str], started: float) -> Environment | None:
        marker = final / MARKER
        try:
            os.utime(marker)  # records the use for cleanup; fails if it is not finished
        except FileNotFoundError:
            return None
        return Environment(key=key, path=final, python=final / "bin" / "python", requirements=reqs,
                           created=False, seconds=time.monotonic() - started)

    def _remove_stale_builds(self, key: str) -> None:
        """Delete half-builds of `key` whose builder is gone (nobody holds the lock)."""
        with self._try_lock(key) as held:
            if held:
                self._clear_builds(key)

    def _clear_builds(self, key: str) -> None:
        for stale in self._envs.glob(f".build-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def _remove(self, path: Path) -> bool:
        """Remove one finished env unless it is being built or used; rename first so it is never seen half-deleted."""
        with self._try_lock(path.name) as held, self._try_lock(path.name, "use") as unused:
            if not (held and unused):
                return False
            trash = self._envs / f".trash-{path.name}-{secrets.token_hex(4)}"
            os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _lock_fd(self, key: str, suffix: str = "lock") -> int:
        self._locks.mkdir(parents=True, exist_ok=True)
        self._envs.mkdir(parents=True, exist_ok=True)
        return os.open(self._locks / f"{key}.{suffix}", os.O_RDWR | os.O_CREAT, 0o644)

    @asynccontextmanager
    async def in_use(self, env: Environment) -> AsyncIterator[Environment]:
        """Hold `env` while it is used (validated, copied for deploy): cleanup skips it meanwhile.

        Many users may hold one env at once (a shared flock); raises EnvBuildError when
        the env was removed before it could be held.
        """
        fd = self._lock_fd(env.key, "use")
        try:
            await _flock(fd, fcntl.LOCK_SH)  # a removal holds it exclusively for a moment only
            if not (env.path / MARKER).is_file():
                raise EnvBuildError(f"environment {env.key[:12]} was removed by a cleanup before it could be used; "
                                    "run the job again to rebuild it")
            yield env
        finally:
            os.close(fd)

    def _try_lock(self, key: str, suffix: str = "lock") -> AbstractContextManager[bool]:
        """The exclusive lock of `key` (`suffix`: which of its locks) if free at once: True when taken."""
        return flocked(self._lock_fd(key, suffix), fcntl.LOCK_EX | fcntl.LOCK_NB)

    @asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
        """Hold the key's flock (between processes and between tasks of one process: flock is per open file)."""
        fd = self._lock_fd(key)
        try:
            await _flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _uv_env(self) -> dict[str, str]:
        """The builder's environment minus secret-looking names (uv's own UV_* settings are kept)."""
        env = {k: v for k, v in os.environ.items() if k.startswith("UV_") or not SECRET_NAME_PATTERN.search(k)}
        env.setdefault("UV_CACHE_DIR", str(self.root / "uv-cache"))
        env["UV_PYTHON_DOWNLOADS"] = "never"
        return env

    async def _uv(self, args: list[str], reqs: list[str]) -> None:
        try:
            with anyio.fail_after(self.install_timeout):
                done = await anyio.run_process([self.uv, *args], env=self._uv_env(), check=False)
        except TimeoutError:
            raise EnvBuildError(f"uv {args[0]} for {reqs} took longer than {self.install_timeout:.0f}s") from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-12:])
            hint = " (only wheels are accepted: only_binary=True)" if self.only_binary and "wheel" in tail else ""
            raise EnvBuildError(f"uv {' '.join(args[:2])} for {reqs} failed (exit {done.returncode}){hint}:\n{tail}")
