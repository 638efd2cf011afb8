"""flock on an open file descriptor, as a context manager that says whether the lock was taken."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def flocked(fd: int, mode: int) -> Iterator[bool]:
    """Hold flock(`fd`, `mode`) for the block: True when taken, False when LOCK_NB found it held elsewhere.

    The descriptor is closed at the end either way, which releases the lock.
    """
    try:
        try:
            fcntl.flock(fd, mode)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
