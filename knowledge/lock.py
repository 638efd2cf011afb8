"""The repository's write lock: one writer at a time, across threads and processes, for a local repository.

LanceDB's optimistic commits keep concurrent appends safe, but a merge-insert does not see a
row that another writer inserts at the same moment, so two writers storing the same case
would both insert it. Holding this lock around read-then-write sequences makes them atomic.
An object-store URI has no shared file to lock: there the caller may pass a lock that all
writers share (`shared`, e.g. an advisory lock of the database the workers already share);
without one only the in-process lock applies, and two machines storing the very same case
at the same moment may both insert it (distinct cases are never lost either way).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

LOCK_FILE = ".foundry-write.lock"


def local_path(uri: str) -> Path | None:
    """The directory of a local repository URI (a plain path or file://), None for any other scheme."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


class WriteLock:
    """Re-entrant for the holding thread; the file lock is taken only by the outermost hold."""

    def __init__(self, uri: str, shared: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        directory = local_path(uri)
        self.path = directory / LOCK_FILE if directory is not None else None
        self.shared = shared if self.path is None else None
        """For an object-store URI: makes the context manager held around each outermost write, across machines."""
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        with self._thread_lock:
            self._depth += 1
            fh = None
            held: AbstractContextManager[object] | None = None
            try:
                if self._depth == 1 and self.path is not None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fh = open(self.path, "a")  # noqa: SIM115 - held open for the lock's lifetime
                    fcntl.flock(fh, fcntl.LOCK_EX)
                elif self._depth == 1 and self.shared is not None:
                    held = self.shared()
                    held.__enter__()
                yield
            finally:
                self._depth -= 1
                if fh is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    fh.close()
                if held is not None:
                    held.__exit__(None, None, None)
