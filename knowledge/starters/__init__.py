"""The starter library: small, validated MCP servers shipped with the package, one folder each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

STARTERS_DIR = Path(__file__).resolve().parent
REQUIRED_FILES = ("server.py", "requirements.txt", "cases.json", "meta.json")


@dataclass(frozen=True)
class Starter:
    """One starter server on disk."""

    name: str
    """Folder name, also the stored server name (with '_' as '-')."""
    directory: Path
    """Folder holding server.py, requirements.txt, cases.json and meta.json."""
    description: str
    """A user-style request the starter answers."""
    category: str
    """Coarse category."""
    tags: tuple[str, ...]
    """Search keywords."""
    requirements: tuple[str, ...]
    """Pinned requirement lines."""

    @property
    def server_name(self) -> str:
        """The name the server is stored and deployed under."""
        return self.name.replace("_", "-")


def load_starter(directory: Path) -> Starter:
    """Read one starter folder; ValueError naming the folder and the missing or bad file."""
    missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
    if missing:
        raise ValueError(f"starter {directory} lacks {missing}; each starter needs {list(REQUIRED_FILES)}")
    meta = json.loads((directory / "meta.json").read_text())
    for key in ("description", "category"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ValueError(f"starter {directory}/meta.json needs a non-empty string {key!r}")
    lines = (directory / "requirements.txt").read_text().splitlines()
    reqs = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return Starter(
        name=directory.name,
        directory=directory,
        description=meta["description"],
        category=meta["category"],
        tags=tuple(meta.get("tags", [])),
        requirements=reqs,
    )


def list_starters() -> list[Starter]:
    """Every starter shipped with the package, sorted by name."""
    return [load_starter(d) for d in sorted(STARTERS_DIR.iterdir()) if (d / "server.py").is_file()]
