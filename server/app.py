"""The MCP face: one MCPServer whose tools validate input, call the Foundry and shape the answer."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError

from builder.service import Foundry
from server.errors import argument_error
from server.tools import builds, jobs, repository

INSTRUCTIONS = """mcp-foundry builds, validates and deploys MCP servers.
Long work runs as jobs: a tool that starts one returns a job_id at once; follow it with build_status and read the
report with build_result (pass wait_s, up to 50 s, to wait, with progress notifications). Jobs run in a worker
process, so they go on after this session ends. Every job's log is the resource foundry://jobs/{job_id}/log."""


class FoundryServer(MCPServer):
    """MCPServer whose argument-validation errors name the field, the problem and what is accepted."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """As MCPServer.call_tool, with rejected arguments explained in one line each."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError) and not isinstance(e, UnexpectedToolError):
                raise ToolError(argument_error(name, e.__cause__, self._tool_input_schema(name))) from e.__cause__
            raise


def build_app(foundry: Foundry) -> MCPServer:
    """The MCP server with every tool group registered."""
    from importlib.metadata import version

    app = FoundryServer(name="mcp-foundry", instructions=INSTRUCTIONS, version=version("mcp-foundry"), log_level="WARNING")
    jobs.register(app, foundry)
    builds.register(app, foundry)
    repository.register(app, foundry)
    return app
