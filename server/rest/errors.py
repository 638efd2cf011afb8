"""HTTP errors of the REST face: every one a JSON body with a message, rejected input one line per bad field."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError
from starlette.responses import JSONResponse

from builder.errors import InputError, NotConfigured
from server.errors import KNOWN_ERRORS, argument_problems
from server.rest.models import ErrorBody


class ApiError(Exception):
    """An HTTP error answer: status, message, and (422) the bad fields one line each."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []

    def response(self) -> JSONResponse:
        """The answer as JSON (ErrorBody)."""
        return JSONResponse(ErrorBody(error=self.message, errors=self.errors).model_dump(), status_code=self.status)


def rejected(lines: list[str]) -> ApiError:
    """422 for bad input: the message is every line, one per bad field."""
    return ApiError(422, "\n".join(lines), lines)


def from_tool_error(tool: str, error: ToolError, schema: dict[str, Any] | None, *,
                    path_fields: Collection[str] = (), renamed: dict[str, str] | None = None) -> ApiError:
    """The HTTP answer for a failed run of one of the foundry's MCP tools, with the tool's own words.

    Rejected arguments are 422, one line per field, except that a bad value of a field taken
    from the URL's path (a job id, a server name) is 404: nothing by that name exists.
    `renamed` maps a tool argument to the query parameter that carries it (query -> q).
    """
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__
    cause = next((c for c in chain if isinstance(c, ValidationError | InputError | NotConfigured)), None)
    if cause is None:
        cause = next((c for c in chain if isinstance(c, KNOWN_ERRORS)), None)
    if isinstance(cause, ValidationError):
        fields = [".".join(map(str, e["loc"][:1])) for e in cause.errors()]
        lines = [f"{tool}: {renamed_field(line, renamed)}" for line in argument_problems(cause, schema)]
        if fields and all(f in path_fields for f in fields):
            return ApiError(404, "\n".join(lines), lines)
        return rejected(lines)
    if isinstance(cause, InputError):
        line = f"{tool}: {renamed_field(str(cause), renamed)}"
        return ApiError(404 if cause.field in path_fields else 422, line, [line])
    if isinstance(cause, NotConfigured):
        return ApiError(503, f"{tool}: {cause}")
    if cause is not None:  # the sandbox backend is unusable here, the knowledge store failed...
        return ApiError(503, f"{tool}: {cause}")
    if isinstance(error, UnexpectedToolError):
        return internal(tool, chain[-1])
    return ApiError(400, f"{tool}: {str(error).removeprefix(f'Error executing tool {tool}: ')}")


def internal(where: str, crash: BaseException) -> ApiError:
    """500 for a bug of ours: the client gets no traceback, the log does."""
    import logging

    logging.getLogger("mcp_foundry.rest").error("%s crashed", where, exc_info=crash)
    return ApiError(500, f"{where}: internal error ({type(crash).__name__}); this is a bug in mcp-foundry, and its "
                    "traceback is in the log file (logs/mcp-foundry.log in the data directory)")


def renamed_field(line: str, renamed: dict[str, str] | None) -> str:
    """`line` about a tool argument, naming instead the parameter that carries it (`query: ...` -> `q: ...`)."""
    for arg, param in (renamed or {}).items():
        if line.startswith(f"{arg}:"):
            return f"{param}:{line.removeprefix(f'{arg}:')}"
    return line
