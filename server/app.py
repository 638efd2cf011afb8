"""The MCP face: one MCPServer whose tools validate input, call the Foundry and shape the answer.

With a Gateway, the face also serves every mounted server's tools, resources and prompts
beside its own, and tells every open session when those lists change.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError

from builder.service import Foundry
from server.errors import explain_tool_error, strict_type_errors
from server.gateway import Gateway, GatewayError
from server.gateway.notify import Sessions
from server.tools import builds, jobs, repository
from server.tools.relay import SamplingRelay

INSTRUCTIONS = """mcp-foundry builds, validates and deploys MCP servers.
Long work runs as jobs: a tool that starts one returns a job_id at once; follow it with build_status and read the
report with build_result (pass wait_s, up to 50 s, to wait, with progress notifications). Jobs run in a worker
process, so they go on after this session ends. Every job's log is the resource foundry://jobs/{job_id}/log.
Without a model configured here, a build asks you instead: it waits with a `question` (build_status and build_result
show it: the complete instructions a model would get and the JSON Schema of the answer); answer it with answer_build,
from this session or any later one.
Deployed servers are served here too, sandboxed: their tools as <server>__<tool>, their prompts as <server>__<prompt>,
their resources under foundry://servers/<server>/; the lists change as servers are deployed or removed."""

log = logging.getLogger("mcp_foundry.server")



class FoundryServer(MCPServer):
    """MCPServer that serves a Gateway's mounted servers beside its own tools, and whose every error on its own
    tools reads `<tool>: <field>: <problem> (accepted: ...)`.

    Arguments of its own tools are checked strictly against each tool's schema first (a
    boolean must be true or false, not "yes"), so that a tool added later is covered without
    doing anything. Errors are explained at this one boundary: rejected arguments, the
    packages' own errors and crashes alike, never as a bare "Error executing tool". A
    mounted tool's arguments are its own server's to judge.
    """

    def __init__(self, *args: Any, gateway: Gateway | None = None, **kwargs: Any):
        self.bus = InMemorySubscriptionBus()
        super().__init__(*args, subscriptions=self.bus, **kwargs)
        self.gateway = gateway
        self.sessions = Sessions(self.bus)
        self.relay: SamplingRelay | None = None
        """Answers the questions of builds whose session lends its model (run by `serve`)."""
        self.middleware.append(self.sessions)
        if gateway is not None:
            gateway.listeners.append(self.sessions.changed)
            # Handshake-era clients learn from initialize that the lists may change; both transports take their
            # initialize answer from this one method of the low-level server, so it is set once, here.
            low = self._lowlevel_server
            low.create_initialization_options = functools.partial(  # type: ignore[method-assign]
                type(low).create_initialization_options, low,
                NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True))

    def own_tool(self, name: str) -> Any:
        """One of the foundry's own tools (an SDK Tool: its argument model, schema and function), or None.

        The REST face runs the very tools the MCP face does, so that both check input alike.
        """
        return self._tool_manager.get_tool(name)

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        if self.gateway is not None and self.gateway.has_tool(name):
            return self.gateway.table.schemas.get(name)
        return super()._tool_input_schema(name)

    async def list_tools(self) -> list[types.Tool]:
        """The foundry's own tools (descriptions free of the docstrings' indentation), then every mounted server's."""
        own = [tool.model_copy(update={"description": inspect.cleandoc(tool.description or "")})
               for tool in await super().list_tools()]
        return own + (self.gateway.tools() if self.gateway else [])

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """A mounted tool is proxied to its server; the foundry's own tools get strict argument types and every
        error explained (see the class)."""
        if self.gateway is not None and self.gateway.has_tool(name):
            try:
                return await self.gateway.call_tool(name, arguments)
            except GatewayError as e:
                raise ToolError(str(e)) from e
        schema = self._tool_input_schema(name)
        problems = strict_type_errors(schema, arguments) if schema is not None else []
        if problems:
            raise ToolError(f"{name}: " + "; ".join(problems))
        try:
            return await super().call_tool(name, arguments, context)
        except MCPError:
            raise
        except ToolError as e:
            own = sorted(t.name for t in await super().list_tools())
            message, crash = explain_tool_error(name, e, schema, own)
            if crash is not None:
                log.error("tool %s crashed", name, exc_info=crash)
            raise ToolError(message) from None

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
        """A mounted prompt is rendered by its server; an unknown prompt is an invalid-params error (-32602), not
        code 0."""
        if self.gateway is not None and self.gateway.has_prompt(name):
            try:
                return await self.gateway.get_prompt(name, arguments)
            except GatewayError as e:
                raise ValueError(str(e)) from e  # the SDK answers a failed prompt with its message
        if self._prompt_manager.get_prompt(name) is None:
            known = ", ".join(p.name for p in await self.list_prompts()) or "none"
            raise MCPError(types.INVALID_PARAMS, f"prompts/get: unknown prompt {name[:100]!r} (accepted: {known})")
        return await super().get_prompt(name, arguments, context)

    def withdraw_empty_prompts(self) -> None:
        """Stop advertising the prompts capability while no prompt can ever be listed (no own prompt, no gateway
        whose mounted servers could bring some): clients would list nothing."""
        if self.gateway is None and not self._prompt_manager.list_prompts():
            for method in ("prompts/list", "prompts/get"):
                self._lowlevel_server._request_handlers.pop(method, None)


def build_app(foundry: Foundry, gateway: Gateway | None = None) -> FoundryServer:
    """The MCP server with every tool group registered, serving `gateway`'s mounted servers when given."""
    from importlib.metadata import version

    app = FoundryServer(name="mcp-foundry", instructions=INSTRUCTIONS, version=version("mcp-foundry"),
                        log_level="WARNING", gateway=gateway)
    app.relay = SamplingRelay(foundry)
    jobs.register(app, foundry, app.relay)
    builds.register(app, foundry, gateway, app.relay)
    repository.register(app, foundry)
    app.withdraw_empty_prompts()
    return app
