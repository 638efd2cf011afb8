"""The MCP face: one MCPServer whose tools validate input, call the Foundry and shape the answer."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from builder.jobs import JobRunner
from builder.service import Foundry
from server.tools import builds, jobs, repository

INSTRUCTIONS = """mcp-foundry builds, validates and deploys MCP servers.
Long work runs as jobs: a tool that starts one returns a job_id at once; follow it with build_status and read the
report with build_result (pass wait_s to wait, with progress notifications). Every job's log is the resource
foundry://jobs/{job_id}/log."""


def build_app(foundry: Foundry, runner: JobRunner) -> MCPServer:
    """The MCP server with every tool group registered."""
    from importlib.metadata import version

    app = MCPServer(name="mcp-foundry", instructions=INSTRUCTIONS, version=version("mcp-foundry"), log_level="WARNING")
    jobs.register(app, foundry, runner)
    builds.register(app, foundry, runner)
    repository.register(app, foundry)
    return app
