"""Fixtures for the sandbox runtime: real backends, a work dir, a TCP server on 127.0.0.1, leftover-process checks."""

from __future__ import annotations

import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.backends import BubblewrapBackend, ProcessBackend
from sandbox.policy import safe_env
from sandbox.spec import Limits, RunSpec

PYTHON = sys.executable
"""The test interpreter (a venv whose base lives under /root): the sandbox must make it usable."""


@pytest.fixture
def bwrap() -> BubblewrapBackend:
    """The real bubblewrap backend; the test is skipped, with the reason, where it cannot run."""
    backend = BubblewrapBackend()
    works, why = backend.available()
    if not works:
        pytest.skip(f"bubblewrap unavailable: {why}")
    return backend


@pytest.fixture
def process_backend() -> ProcessBackend:
    """The plain-process backend."""
    return ProcessBackend()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty work dir, the only writable place of a run."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def make_spec(workdir: Path):
    """Build a RunSpec on the work dir with a safe env, the test venv mounted read-only and the given limits."""

    def make(*, network: bool = False, readonly: tuple[Path, ...] = (Path(sys.prefix),), **limits) -> RunSpec:
        return RunSpec(workdir=workdir, readonly_paths=readonly, env=safe_env(), network=network,
                       limits=Limits(**{"wall_seconds": 20, **limits}))

    return make


@pytest.fixture
def marker() -> str:
    """A unique word to put in sandboxed command lines, so leftovers can be found in /proc."""
    return f"foundrytest{uuid.uuid4().hex[:12]}"


def _processes_with(word: str) -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if word in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


@pytest.fixture
def processes_with():
    """A function: command lines of live (non-zombie) processes that mention a word (leftover check)."""
    return _processes_with


@pytest.fixture
def tcp_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 outside the sandbox that answers b"pong"; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()
