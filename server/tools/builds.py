"""Build tools: request_build and the deployed-server tools (list, get, remove, roll back)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from builder import deploy
from builder.jobs import JobRunner
from builder.service import Foundry
from server.errors import tool_errors
from server.models import JobTicket

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                            description="A deployed server's name (see list_servers).")]
Version = Annotated[str | None, Field(max_length=16, pattern=r"^[0-9]+$",
                                      description="A version number; get_server defaults to the current version, "
                                                  "remove_server to every version, rollback_server to the one "
                                                  "before the current.")]


class ServerList(BaseModel):
    """Deployed servers."""

    servers: list[deploy.ServerSummary]


class Removed(BaseModel):
    """What remove_server removed."""

    name: str
    removed_versions: list[str]


def register(app: MCPServer, foundry: Foundry, runner: JobRunner) -> None:
    """Add the build and deployed-server tools to `app`."""
    servers_dir = foundry.settings.servers_dir

    @app.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True))
    @tool_errors
    async def request_build(
        ctx: Context,
        description: Annotated[str, Field(min_length=4, max_length=8000, description="The capability the server "
                                          "should provide, in plain words, in any language (at least 8 "
                                          "characters, or 4 in Chinese, Japanese or Korean).")],
        name: Annotated[str | None, Field(max_length=64, description="Server name (a Python identifier); "
                                          "derived from the description when omitted.")] = None,
        tools: Annotated[list[str] | None, Field(max_length=30, description="Tool names or one-line tool "
                                                 "descriptions the server must offer.")] = None,
        dependencies: Annotated[list[str] | None, Field(max_length=30, description="Python packages to use "
                                                        "(pins allowed).")] = None,
        constraints: Annotated[list[str] | None, Field(max_length=30, description="Constraints, e.g. 'no network', "
                                                       "'respond within 1 s'.")] = None,
        examples: Annotated[list[dict[str, Any]] | None, Field(max_length=30, description="Example calls: "
                                                               "{tool, arguments, expect}.")] = None,
        needs_network: Annotated[bool, Field(description="The server needs network access at run time.")] = False,
        priority: Annotated[Literal["low", "normal", "high"], Field(description="Queue rank: high jobs start before "
                                                                    "normal ones, normal before low.")] = "normal",
        timeout_s: Annotated[float | None, Field(ge=60, le=86400, description="Build timeout in seconds (60..86400).")] = None,
        fresh: Annotated[bool, Field(description="Build anew even when a stored server covers the request "
                                     "(never reuse).")] = False,
    ) -> JobTicket:
        """Build, validate and deploy an MCP server for a capability; returns a job id at once.

        A request the repository already covers (by meaning, in any language the embedding
        model knows) is re-validated and deployed without generating code; the report says
        which stored server was reused and why each candidate was or was not. Follow it with
        build_status and build_result; report_false_reuse flags a reuse that does not do what
        was asked.
        """
        from builder.params import build_params

        params = build_params(description=description, name=name, tools=tools, dependencies=dependencies,
                              constraints=constraints, examples=examples, needs_network=needs_network,
                              priority=priority, timeout_s=timeout_s, fresh=fresh)
        lent = _client_model(ctx)
        job = runner.submit("build", params, timeout_s=timeout_s)
        if lent is not None:
            # No await between submit and this line: the job cannot have started without its provider.
            foundry.job_llm[job.id] = lent
        return JobTicket(job_id=job.id, kind=job.kind, state=job.state,
                         next=f"build_status(job_id='{job.id}'); build_result(job_id='{job.id}', wait_s=120)")

    @app.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def list_servers() -> ServerList:
        """Deployed servers with their versions and the current one."""
        return ServerList(servers=deploy.list_servers(servers_dir))

    @app.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def get_server(name: Name, version: Version = None) -> deploy.Manifest:
        """A deployed server's manifest: tools, dependencies, hashes, validation, and the client config snippet."""
        return deploy.get_server(servers_dir, name, version)

    @app.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False,
                                          openWorldHint=False))
    @tool_errors
    async def remove_server(name: Name, version: Version = None) -> Removed:
        """Remove one version of a deployed server, or all of its versions when no version is given."""
        return Removed(name=name, removed_versions=deploy.remove_server(servers_dir, name, version))

    @app.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                          openWorldHint=False))
    @tool_errors
    async def rollback_server(name: Name, version: Version = None) -> deploy.Manifest:
        """Make an older version current (the one before the current version by default)."""
        return deploy.rollback_server(servers_dir, name, version)


def _client_model(ctx: Context) -> Any:
    """The client's own model through MCP sampling, when no provider is configured and the client offers it."""
    from builder.llm import LLMConfig, make_provider
    from builder.llm.sampling import SamplingProvider, supports_sampling

    if make_provider(LLMConfig.from_env()) is not None or not supports_sampling(ctx):
        return None
    return SamplingProvider(ctx.session)
