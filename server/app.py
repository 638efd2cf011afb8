"""The MCP face: one MCPServer whose tools validate input, call the Foundry and shape the answer.

With a Gateway, the face also serves every mounted server's tools, resources and prompts
beside its own, and tells every open session when those lists change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from pydantic import ValidationError

from builder.jobs import JobRunner
from builder.service import Foundry
from server.errors import argument_error
from server.gateway import Gateway, GatewayError
from server.gateway.notify import Sessions
from server.tools import builds, jobs, repository

INSTRUCTIONS = """mcp-foundry builds, validates and deploys MCP servers.
Long work runs as jobs: a tool that starts one returns a job_id at once; follow it with build_status and read the
report with build_result (pass wait_s to wait, with progress notifications). Every job's log is the resource
foundry://jobs/{job_id}/log.
Deployed servers are served here too, sandboxed: their tools as <server>__<tool>, their prompts as <server>__<prompt>,
their resources under foundry://servers/<server>/; the lists change as servers are deployed or removed."""


class FoundryServer(MCPServer):
    """MCPServer whose argument-validation errors name the field, the problem and what is accepted, and which
    serves a Gateway's mounted servers beside its own tools."""

    def __init__(self, *args: Any, gateway: Gateway | None = None, **kwargs: Any):
        self.bus = InMemorySubscriptionBus()
        super().__init__(*args, subscriptions=self.bus, **kwargs)
        self.gateway = gateway
        self.sessions = Sessions(self.bus)
        self.middleware.append(self.sessions)
        if gateway is not None:
            gateway.listeners.append(self.sessions.changed)
            # Handshake-era clients learn from initialize that the lists may change; both transports take their
            # initialize answer from this one method of the low-level server, so it is set once, here.
            low = self._lowlevel_server
            low.create_initialization_options = functools.partial(  # type: ignore[method-assign]
                type(low).create_initialization_options, low,
                NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True))

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        if self.gateway is not None and self.gateway.has_tool(name):
            return self.gateway.table.schemas.get(name)
        return super()._tool_input_schema(name)

    async def list_tools(self) -> list[types.Tool]:
        """The foundry's own tools, then every mounted server's."""
        return await super().list_tools() + (self.gateway.tools() if self.gateway else [])

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """A mounted tool is proxied to its server; the foundry's own tools explain rejected arguments in one line
        each."""
        if self.gateway is not None and self.gateway.has_tool(name):
            try:
                return await self.gateway.call_tool(name, arguments)
            except GatewayError as e:
                raise ToolError(str(e)) from e
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError) and not isinstance(e, UnexpectedToolError):
                raise ToolError(argument_error(name, e.__cause__, self._tool_input_schema(name))) from e.__cause__
            raise

    async def list_resources(self) -> list[types.Resource]:
        """The foundry's own resources, then every mounted server's."""
        return await super().list_resources() + (self.gateway.resources() if self.gateway else [])

    async def list_resource_templates(self) -> list[types.ResourceTemplate]:
        """The foundry's own resource templates, then every mounted server's."""
        return await super().list_resource_templates() + (self.gateway.templates() if self.gateway else [])

    async def read_resource(self, uri: Any, context: Any = None) -> Iterable[ReadResourceContents] | Any:
        """A mounted server's resource is read from its server; any other URI is the foundry's own."""
        if self.gateway is not None:
            try:
                contents = await self.gateway.read_resource(str(uri))
            except GatewayError as e:
                raise ResourceError(str(e)) from e
            if contents is not None:
                return contents
        return await super().read_resource(uri, context)

    async def list_prompts(self) -> list[types.Prompt]:
        """The foundry's own prompts (none so far), then every mounted server's."""
        return await super().list_prompts() + (self.gateway.prompts() if self.gateway else [])

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        """A mounted prompt is rendered by its server."""
        if self.gateway is not None and self.gateway.has_prompt(name):
            try:
                return await self.gateway.get_prompt(name, arguments)
            except GatewayError as e:
                raise ValueError(str(e)) from e  # the SDK answers a failed prompt with its message
        return await super().get_prompt(name, arguments, context)


def build_app(foundry: Foundry, runner: JobRunner, gateway: Gateway | None = None) -> FoundryServer:
    """The MCP server with every tool group registered, serving `gateway`'s mounted servers when given."""
    from importlib.metadata import version

    app = FoundryServer(name="mcp-foundry", instructions=INSTRUCTIONS, version=version("mcp-foundry"),
                        log_level="WARNING", gateway=gateway)
    jobs.register(app, foundry, runner)
    builds.register(app, foundry, runner, gateway)
    repository.register(app, foundry)
    return app
