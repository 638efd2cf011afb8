"""The ServerDraft: one generated server as files, as the Code step produced it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_FILES = 20
MAX_FILE_BYTES = 200_000
MAX_TOTAL_BYTES = 600_000
REQUIRED_FILES = ("server.py", "requirements.txt", "cases.json")
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.-]+$")
PATH_PATTERN = r"^(?!\.\.?(/|$))(?!.*/\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
"""A relative path of letters, digits, '_', '-', '.' parts, none of them '.' or '..' (what _check_files accepts)."""
_FILES_SCHEMA: dict = {
    "required": list(REQUIRED_FILES),
    "maxProperties": MAX_FILES,
    "propertyNames": {"pattern": PATH_PATTERN},
    "additionalProperties": {"type": "string", "maxLength": MAX_FILE_BYTES},
    "properties": {
        "server.py": {"type": "string", "description": "The MCP server (mcp 2.3.0, MCPServer)."},
        "requirements.txt": {"type": "string", "description": "One name==version per line; mcp==2.3.0 always."},
        "cases.json": {"type": "string", "description": "JSON text {\"cases\": [...]} in the cases format."},
        "fixtures.py": {"type": "string", "description": "Optional: writes the input files cases refer to into "
                                                         "fixtures/ before the server starts."},
        "README.md": {"type": "string"},
        "Dockerfile": {"type": "string"},
    },
}


class ServerDraft(BaseModel):
    """A generated MCP server: relative path -> file content."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(description=(
        f"Relative path -> text content; at most {MAX_FILES} files of at most {MAX_FILE_BYTES} bytes each (UTF-8) and "
        f"{MAX_TOTAL_BYTES} bytes in all. Always server.py, requirements.txt and cases.json; README.md and "
        "Dockerfile; fixtures.py when cases need input files."), json_schema_extra=_FILES_SCHEMA)

    @field_validator("files")
    @classmethod
    def _check_files(cls, files: dict[str, str]) -> dict[str, str]:
        if len(files) > MAX_FILES:
            raise ValueError(f"files: {len(files)} files, at most {MAX_FILES} accepted")
        total = 0
        for path, content in files.items():
            p = PurePosixPath(path)
            if p.is_absolute() or not p.parts or str(p) != path or any(
                    part in ("..", ".") or not _SAFE_PART.match(part) for part in p.parts):
                raise ValueError(f"files: path {path!r} is not accepted (relative paths of letters, digits, "
                                 "'_', '-', '.', no '..')")
            size = len(content.encode("utf-8"))
            if size > MAX_FILE_BYTES:
                raise ValueError(f"files[{path!r}]: {size} bytes, at most {MAX_FILE_BYTES} accepted")
            total += size
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"files: {total} bytes in total, at most {MAX_TOTAL_BYTES} accepted")
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise ValueError(f"files: missing {', '.join(missing)} (every draft needs {', '.join(REQUIRED_FILES)})")
        return files

    def requirements(self) -> list[str]:
        """Requirement lines of requirements.txt, comments and blanks dropped."""
        out = []
        for line in self.files.get("requirements.txt", "").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append(line)
        return out

    def write_to(self, directory: Path) -> Path:
        """Write every file under `directory` (created if needed) and return it."""
        directory.mkdir(parents=True, exist_ok=True)
        for rel, content in self.files.items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        return directory

    def hashes(self) -> dict[str, str]:
        """sha256 (hex) of each file's bytes."""
        return {rel: hashlib.sha256(c.encode("utf-8")).hexdigest() for rel, c in sorted(self.files.items())}

    def digest(self) -> str:
        """One sha256 over all files, so two identical drafts compare equal."""
        return hashlib.sha256(json.dumps(self.hashes(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def read_from(cls, directory: Path) -> ServerDraft:
        """Load a draft from a server directory (text files at the top level and one level down)."""
        return cls(files=read_files(directory))


def read_files(directory: Path) -> dict[str, str]:
    """The text files of a server directory, top level and one level down (hidden files, caches and the
    deploy's own manifest files left out).

    The directory is untrusted (a user's own server, a deployed copy): it is walked and read
    without following links (sandbox.serverdir), so a link planted there never brings a file
    from outside into a draft, a deployment or the repository. Links are left out.
    """
    from sandbox.serverdir import read_bytes, walk

    files: dict[str, str] = {}
    for entry in walk(directory):
        rel = entry.rel
        if entry.kind != "file" or any(part.startswith(".") or part == "__pycache__" for part in rel.parts) \
                or rel.name in ("manifest.json", "client_config.json") or len(rel.parts) > 2:
            continue
        try:
            files[rel.as_posix()] = read_bytes(directory, rel).decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files
