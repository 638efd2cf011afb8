"""A small on-disk JSON cache with a TTL, one file per key (sha256 of the URL)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class JsonCache:
    """Stores JSON-able values under a key (usually a URL); entries older than `ttl_s` are misses."""

    def __init__(self, directory: Path | str, *, ttl_s: float, clock: Callable[[], float] = time.time):
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self._clock = clock
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str) -> Any | None:
        """The stored value for `key`, or None when absent, expired or unreadable."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            fresh = self._clock() - float(entry["stored_at"]) <= self.ttl_s and entry.get("key") == key
        except (OSError, ValueError, KeyError, TypeError):
            fresh = False
        if not fresh:
            self.misses += 1
            return None
        self.hits += 1
        return entry["value"]

    def set(self, key: str, value: Any) -> None:
        """Store `value` for `key`, atomically (a crash never leaves a half-written entry)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"key": key, "stored_at": self._clock(), "value": value})
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
