"""The inputs of validate_server and request_build, checked once for the MCP face and the CLI alike."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from builder.errors import InputError

_IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
CODERS = {
    "auto": "the model configured for the foundry (MCP_FOUNDRY_LLM_*), else the caller",
    "server": "the configured model only; the build fails at once when none is configured",
    "client": "always the caller: each model request becomes a question, answered with answer_build",
}
"""Who answers a build's model requests (request_build's `coder`)."""


def _str_list(field: str, value: Any, *, max_items: int = 30, max_len: int = 500) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(field, "must be a list of non-empty strings", f"up to {max_items} strings")
    if len(value) > max_items:
        raise InputError(field, f"{len(value)} items", f"at most {max_items}")
    long = [v for v in value if len(v) > max_len]
    if long:
        raise InputError(field, f"item {long[0][:40]!r}... is {len(long[0])} characters", f"at most {max_len}")
    return [v.strip() for v in value]


def build_params(description: str, name: str | None = None, tools: list[str] | None = None,
                 dependencies: list[str] | None = None, constraints: list[str] | None = None,
                 examples: list[dict[str, Any]] | None = None, needs_network: bool = False,
                 priority: str = "normal", timeout_s: float | None = None, fresh: bool = False,
                 coder: str = "auto") -> dict[str, Any]:
    """Check request_build's inputs and return the job parameters; InputError names the bad field.

    `coder` (kept in the params, where the worker reads it): who answers the build's model
    requests; see CODERS.
    """
    from knowledge.text import has_cjk, normalize_package

    # A CJK character carries about a word: "把语音转成文字" (speech to text) is a whole request in 7.
    least = 4 if isinstance(description, str) and has_cjk(description) else 8
    if not isinstance(description, str) or not least <= len(description.strip()) <= 8000:
        raise InputError("description", "must say what the server should do in 8 to 8000 characters (4 in "
                         "Chinese, Japanese or Korean)",
                         "plain words, e.g. 'word and character statistics of a text'")
    if name is not None and (not name or len(name) > 64 or not name[0].isalpha() or not set(name) <= _IDENT_CHARS):
        raise InputError("name", f"{name!r} is not a lowercase Python identifier",
                         "1-64 characters: a lowercase letter, then lowercase letters, digits or '_'")
    deps = _str_list("dependencies", dependencies, max_len=200)
    for d in deps or []:
        if not normalize_package(d) or any(c in d for c in " ;|&$`\\"):
            raise InputError("dependencies", f"{d!r} is not a requirement specifier", "e.g. 'pypdf' or 'pypdf==5.1.0'")
    if examples is not None:
        if not isinstance(examples, list) or len(examples) > 30 or not all(isinstance(e, dict) for e in examples):
            raise InputError("examples", "must be a list of at most 30 objects", '{"tool": ..., "arguments": {...}, '
                             '"expect": {...}}')
        for i, e in enumerate(examples):
            if not any(isinstance(e.get(k), str) for k in ("tool", "resource", "prompt")) \
                    or not isinstance(e.get("arguments", {}), dict):
                raise InputError(f"examples[{i}]", "needs 'tool' (a string) and 'arguments' (an object), or "
                                 "'resource' (a URI to read), or 'prompt' (a name) and 'arguments'",
                                 '{"tool": "word_count", "arguments": {"text": "a b"}, "expect": {"equals": 2}}')
        if len(json.dumps(examples, default=str)) > 20_000:
            raise InputError("examples", "more than 20000 characters of JSON", "a few short example calls")
        from sandbox.cases import CasesError, parse_cases

        try:
            parse_cases({"cases": examples}, source="examples")
        except CasesError as e:
            raise InputError("examples", str(e), 'cases: {"tool": ..., "arguments": {...}, "expect": {"equals" | '
                             '"contains" | "matches" | "schema" | "error": ...}}, or {"resource": "<uri>", "expect": '
                             '...}, or {"prompt": ..., "arguments": {...}, "expect": ...}') from None
    if not isinstance(needs_network, bool):
        raise InputError("needs_network", f"{needs_network!r} is not a boolean", "true or false")
    if not isinstance(fresh, bool):
        raise InputError("fresh", f"{fresh!r} is not a boolean", "true (build anew, never reuse) or false")
    if priority not in ("low", "normal", "high"):
        raise InputError("priority", f"{priority!r} is not a priority", "low, normal or high")
    if timeout_s is not None and not (isinstance(timeout_s, int | float) and 60 <= timeout_s <= 86400):
        raise InputError("timeout_s", f"{timeout_s!r} seconds", "60 to 86400 seconds (a build needs time for at least one turn)")
    if coder not in CODERS:
        raise InputError("coder", f"{coder!r} is not a coder", "; ".join(f"{k}: {v}" for k, v in CODERS.items()))
    params: dict[str, Any] = {"description": description.strip(), "needs_network": needs_network,
                              "priority": priority, "coder": coder}
    if fresh:
        params["fresh"] = True
    for key, value in (("name", name), ("tools", _str_list("tools", tools, max_len=300)), ("dependencies", deps),
                       ("constraints", _str_list("constraints", constraints)), ("examples", examples),
                       ("timeout_s", timeout_s)):
        if value is not None:
            params[key] = value
    return params


def validation_params(path: str | None, command: str | None, cases_file: str | None, needs_network: bool,
                      timeout_s: float | None) -> dict[str, Any]:
    """Check validate_server's inputs and return the job parameters; InputError names the bad field.

    A server directory is walked here, without following links, so that a directory that
    links out of itself (or holds a bad cases.json) is refused before a job starts.
    """
    if bool(path) == bool(command):
        raise InputError("path/command", "give exactly one of them", "path: a server directory; command: a command "
                         "line that starts an MCP server on stdio")
    if not isinstance(needs_network, bool):
        raise InputError("needs_network", f"{needs_network!r} is not a boolean", "true or false")
    params: dict[str, Any] = {"needs_network": needs_network}
    if path:
        p = _local_path("path", path, "a server directory holding server.py")
        if not p.is_dir():
            raise InputError("path", f"{path!r} is not an existing directory", "a directory holding server.py")
        entry = p / "server.py"
        if not entry.is_file() or entry.is_symlink():
            raise InputError("path", f"{p} has no server.py (a regular file, not a link)",
                             "a directory whose entry point is server.py")
        _check_server_dir(p, check_cases=not cases_file)
        params["path"] = str(p)
    else:
        argv = _command_line(command or "")
        params["command"] = argv
    if cases_file:
        c = _local_path("cases_file", cases_file, 'a JSON file {"cases": [...]}')
        if not c.is_file():
            raise InputError("cases_file", f"{cases_file!r} does not exist", "a JSON file {\"cases\": [...]}")
        from sandbox.cases import CasesError, load_cases

        try:
            load_cases(c)
        except CasesError as e:
            raise InputError("cases_file", str(e), CASES_ACCEPTED) from None
        params["cases_file"] = str(c)
    if timeout_s is not None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 86400:
            raise InputError("timeout_s", f"{timeout_s!r} seconds", "more than 0 and at most 86400 seconds")
        params["timeout_s"] = timeout_s
    return params


CASES_ACCEPTED = '{"cases": [{"tool": ..., "arguments": {...}, "expect": {...}}]}'


def _local_path(field: str, value: str, accepted: str) -> Path:
    """`value` as an absolute, resolved path on an ordinary file system; InputError naming `field` otherwise."""
    from sandbox.serverdir import kernel_fs

    bad = sorted({f"U+{ord(c):04X}" for c in value if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise InputError(field, f"contains control character(s) {', '.join(bad)} (a NUL byte ends a path early)",
                         f"{accepted}, as a path without control characters")
    kernel = f"{accepted} on an ordinary file system"
    if where := kernel_fs(Path(value).expanduser()):
        raise InputError(field, f"{value!r} lies in {where}, a kernel file system whose entries lead anywhere "
                         "(e.g. /proc/1/root)", kernel)
    try:
        resolved = Path(value).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(field, f"{value!r} cannot be resolved: {getattr(e, 'strerror', None) or e}", accepted) from None
    if where := kernel_fs(resolved):
        raise InputError(field, f"{value!r} leads into {where}, a kernel file system whose entries lead anywhere "
                         "(e.g. /proc/1/root)", kernel)
    try:
        resolved.stat()
    except FileNotFoundError:
        pass  # the caller says "does not exist" in its own words
    except OSError as e:
        raise InputError(field, f"{value!r} cannot be read: {e.strerror or e}", accepted) from None
    return resolved


def _check_server_dir(directory: Path, *, check_cases: bool) -> None:
    """Walk the server directory without following links, and check its cases.json when it will be used."""
    from sandbox.cases import CasesError, parse_cases_text
    from sandbox.serverdir import ServerDirError, read_bytes, walk

    try:
        walk(directory)
        raw = read_bytes(directory, "cases.json") if check_cases else None
    except FileNotFoundError:
        return
    except ServerDirError as e:
        raise InputError("path", str(e), "a server directory of regular files, and links that stay inside it") from None
    if raw is not None:
        try:
            parse_cases_text(raw, source=str(directory / "cases.json"))
        except CasesError as e:
            raise InputError("path", f"its cases.json is not a valid cases file: {e}", CASES_ACCEPTED) from None


def _command_line(command: str) -> list[str]:
    """Split a command line as a POSIX shell would; InputError naming 'command' when it cannot be split."""
    accepted = "a command line that starts an MCP server on stdio, with balanced quotes, e.g. 'python -m my_server'"
    if "\0" in command:
        raise InputError("command", "contains a NUL byte, which no command line can hold", accepted)
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise InputError("command", f"{command[:200]!r} cannot be split into arguments: {e} (an unbalanced quote?)",
                         accepted) from None
    if not argv:
        raise InputError("command", "empty command line", accepted)
    return argv


def deploy_params(path: str, name: str, needs_network: bool = False, secrets: list[str] | None = None,
                  description: str | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """Check deploy_server's inputs (a server directory the user wrote) and return the job parameters."""
    from builder.adopt import server_files
    from builder.deploy import check_secret_names

    if not isinstance(name, str) or not name or len(name) > 64 or not name[0].isalpha() \
            or not set(name) <= _IDENT_CHARS:
        raise InputError("name", f"{name!r} is not a lowercase Python identifier",
                         "1-64 characters: a lowercase letter, then lowercase letters, digits or '_'")
    if not isinstance(path, str) or not path.strip():
        raise InputError("path", "empty", "a directory holding server.py")
    p = _local_path("path", path, "a directory holding server.py")
    if not p.is_dir():
        raise InputError("path", f"{path!r} is not an existing directory", "a directory holding server.py")
    if not (p / "server.py").is_file():
        raise InputError("path", f"{p} has no server.py", "a directory whose entry point is server.py")
    _check_server_dir(p, check_cases=True)
    server_files(p)  # too many, too large or unreadable files are refused now, not inside the job
    if not isinstance(needs_network, bool):
        raise InputError("needs_network", f"{needs_network!r} is not a boolean", "true or false")
    params: dict[str, Any] = {"path": str(p), "name": name, "needs_network": needs_network,
                              "secrets": check_secret_names(_str_list("secrets", secrets, max_len=100) or [])}
    if description is not None:
        if not isinstance(description, str) or not 8 <= len(description.strip()) <= 8000:
            raise InputError("description", "must say what the server does in 8 to 8000 characters",
                             "plain words; default: server.py's docstring")
        params["description"] = description.strip()
    if timeout_s is not None:
        if not (isinstance(timeout_s, int | float) and 0 < timeout_s <= 86400):
            raise InputError("timeout_s", f"{timeout_s!r} seconds", "more than 0 and at most 86400 seconds")
        params["timeout_s"] = timeout_s
    return params
