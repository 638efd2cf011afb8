"""The MCP face: one MCPServer whose tools validate input, call the Foundry and shape the answer."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from builder.jobs import JobRunner
from builder.service import Foundry
from server.errors import explain_tool_error, strict_type_errors
from server.tools import builds, jobs, repository

INSTRUCTIONS = """mcp-foundry builds, validates and deploys MCP servers.
Long work runs as jobs: a tool that starts one returns a job_id at once; follow it with build_status and read the
report with build_result (pass wait_s to wait, with progress notifications). Every job's log is the resource
foundry://jobs/{job_id}/log."""

log = logging.getLogger("mcp_foundry.server")


class FoundryServer(MCPServer):
    """MCPServer whose every tool error reads `<tool>: <field>: <problem> (accepted: ...)`.

    Arguments are checked strictly against each tool's schema first (a boolean must be
    true or false, not "yes"), so that a tool added later is covered without doing
    anything. Errors are explained at this one boundary: rejected arguments, the
    packages' own errors and crashes alike, never as a bare "Error executing tool".
    """

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """As MCPServer.call_tool, with strict argument types and every error explained (see the class)."""
        schema = self._tool_input_schema(name)
        problems = strict_type_errors(schema, arguments) if schema is not None else []
        if problems:
            raise ToolError(f"{name}: " + "; ".join(problems))
        try:
            return await super().call_tool(name, arguments, context)
        except MCPError:
            raise
        except ToolError as e:
            message, crash = explain_tool_error(name, e, schema, sorted(t.name for t in await super().list_tools()))
            if crash is not None:
                log.error("tool %s crashed", name, exc_info=crash)
            raise ToolError(message) from None

    async def list_tools(self) -> list[types.Tool]:
        """As MCPServer.list_tools, with descriptions free of the docstrings' indentation."""
        return [tool.model_copy(update={"description": inspect.cleandoc(tool.description or "")})
                for tool in await super().list_tools()]

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        """As MCPServer.get_prompt, but an unknown prompt is an invalid-params error (-32602), not code 0."""
        if self._prompt_manager.get_prompt(name) is None:
            known = ", ".join(p.name for p in self._prompt_manager.list_prompts()) or "none"
            raise MCPError(types.INVALID_PARAMS, f"prompts/get: unknown prompt {name[:100]!r} (accepted: {known})")
        return await super().get_prompt(name, arguments, context)

    def withdraw_empty_prompts(self) -> None:
        """Stop advertising the prompts capability while no prompt is registered (clients would list nothing)."""
        if not self._prompt_manager.list_prompts():
            for method in ("prompts/list", "prompts/get"):
                self._lowlevel_server._request_handlers.pop(method, None)


def build_app(foundry: Foundry, runner: JobRunner) -> MCPServer:
    """The MCP server with every tool group registered."""
    from importlib.metadata import version

    app = FoundryServer(name="mcp-foundry", instructions=INSTRUCTIONS, version=version("mcp-foundry"), log_level="WARNING")
    jobs.register(app, foundry, runner)
    builds.register(app, foundry, runner)
    repository.register(app, foundry)
    app.withdraw_empty_prompts()
    return app
