"""Why a server under test failed, in the validator's classes: from its stderr, its exit code and the error seen.

The class (dependency, import, runtime, timeout, protocol) picks the builder's healing
strategy, and the reason is what the next turn is told, so both name what the server did.
"""

from __future__ import annotations

import re

from mcp.shared.exceptions import MCPError

from sandbox.report import FailureClass
from sandbox.stdio import ServerIO

_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b):?\s*(.*)$")


def start_failure(exc: Exception | None, timed_out: bool, io: ServerIO, local_modules: set[str],
                  timeout: float) -> tuple[FailureClass, str]:
    """Why the server never completed initialize: classify by its stderr, exit code and the error seen."""
    stderr = io.stderr_text()
    imports = re.findall(r"^(ModuleNotFoundError|ImportError): (.*)$", stderr, re.MULTILINE)
    if imports:
        kind, message = imports[-1]
        missing = re.search(r"No module named '([^']+)'", message)
        if kind == "ModuleNotFoundError" and missing and "." not in missing.group(1) \
                and missing.group(1) not in local_modules:
            return "dependency", (f"missing dependency: No module named '{missing.group(1)}'; add the distribution "
                                  "that provides it to requirements.txt")
        return "import", f"server fails to import: {kind}: {message[:300]}"
    crash = last_exception(stderr)
    if crash:
        return "runtime", f"server crashed before answering initialize: {crash}"
    if not timed_out and io.returncode is not None:
        tail = stderr.strip().splitlines()[-1:] or ["(empty)"]
        return "runtime", f"server exited with code {io.returncode} before answering initialize; stderr: {tail[0][:200]}"
    if timed_out or exc is None:
        return "timeout", (f"no answer to initialize within {timeout:g} s; the server is running but silent on "
                           "stdout (does it start the MCP server, e.g. mcp.run(), under `if __name__ == '__main__'`?)")
    return "protocol", f"initialize failed: {type(exc).__name__}: {str(exc)[:300]}"


def last_exception(stderr: str) -> str | None:
    """The last line of `stderr` that names an exception of the server's own (not the SDK's reports of a tool's)."""
    ours = ("ToolError", "UnexpectedToolError", "MCPServerError")
    for line in reversed(stderr.strip().splitlines()):
        m = _EXCEPTION_LINE.match(line.strip())
        if m and m.group(1).rsplit(".", 1)[-1] not in ours and (m.group(2) or line.strip().endswith(m.group(1))):
            return line.strip()[:300]
    return None


def call_failure(exc: Exception, io: ServerIO, timeout: float) -> tuple[FailureClass, str]:
    """Why a case's request raised instead of answering: a timeout, a dead server, a JSON-RPC error, a bad result."""
    if isinstance(exc, TimeoutError):
        return "timeout", f"no answer within {timeout:g} s"
    if io.returncode is not None:
        crash = last_exception(io.stderr_text())
        return "runtime", f"the server died during the call (exit code {io.returncode})" + (
            f": {crash}" if crash else "")
    if isinstance(exc, MCPError):
        return "protocol", (f"the call got a JSON-RPC error ({exc.code}: {exc}) instead of a result; a tool "
                            "failure must come back as a result with isError=true")
    if isinstance(exc, RuntimeError) and "structured content" in str(exc).lower():
        return "protocol", f"the result does not match the tool's outputSchema: {exc}"
    return "protocol", f"the call failed: {type(exc).__name__}: {str(exc)[:300]}"
