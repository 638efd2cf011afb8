"""Build tools: request_build, deploy_server and the deployed-server tools (list, get, remove, roll back)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from builder import deploy
from builder.jobs import JobState
from builder.service import Foundry
from sandbox.limits import LimitState
from server.errors import tool_errors
from server.gateway import Gateway
from server.gateway.mounts import details
from server.models import JobStatus, JobTicket
from server.tools.relay import SamplingRelay

LOG_TAIL = 20

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
    state: str = Field(description="What happened to the server's state dir.")


class ServerDetails(deploy.Manifest):
    """A deployed version's manifest, and how it appears on this foundry's face."""

    exposed_tools: dict[str, str] = Field(description="The server's tool name -> the name it is called by here "
                                          "(<server>__<tool>, shortened with a stable hash past 64 characters).")
    exposed_prompts: dict[str, str] = Field(description="The server's prompt name -> the name it has here.")
    resource_prefix: str = Field(description="Its resources' URIs here are this prefix + the server's own URI.")
    state_dir: str = Field(description="Its one writable, persistent directory, shared by every version.")
    state_dir_bytes: int = Field(description="What the state dir takes on disk now, in bytes (no quota bounds it).")
    mounted: bool | None = Field(description="Whether this foundry serves it now (null: mounting is off).")
    limits: list[LimitState] | None = Field(description="The limits its sandbox gets when this foundry runs it: "
                                            "disk (/tmp), memory, processes, cpu, each in force or not and why "
                                            "(null: mounting is off, or not yet known).")


class RolledBack(ServerDetails):
    """The version now current, and what happened to the state dir."""

    state: str


def register(app: MCPServer, foundry: Foundry, gateway: Gateway | None = None,
             relay: SamplingRelay | None = None) -> None:
    """Add the build and deployed-server tools to `app` (`relay`: lends a session's model to its builds)."""
    servers_dir = foundry.settings.servers_dir

    def with_details(manifest: deploy.Manifest) -> dict[str, Any]:
        return {**manifest.model_dump(), **details(manifest, servers_dir, gateway.table if gateway else None)}

    @app.tool(title="Build an MCP server",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True))
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
        examples: Annotated[list[dict[str, Any]] | None, Field(max_length=30, description="Example calls every "
                                                               "draft must pass, as test cases: {tool, arguments, "
                                                               "expect}, {resource, expect} or {prompt, arguments, "
                                                               "expect}; expect holds one of equals, contains, "
                                                               "matches, schema, error.")] = None,
        needs_network: Annotated[bool, Field(description="The server needs network access at run time.")] = False,
        priority: Annotated[Literal["low", "normal", "high"], Field(description="Queue rank: high jobs start before "
                                                                    "normal ones, normal before low.")] = "normal",
        timeout_s: Annotated[float | None, Field(ge=60, le=86400, description="Build timeout in seconds (60..86400); "
                                                 "time spent waiting for your answers does not count.")] = None,
        coder: Annotated[Literal["auto", "server", "client"], Field(description="Who writes the requirement and the "
                                                                    "code: auto (the model configured on the foundry, "
                                                                    "else you), server (the configured model only) "
                                                                    "or client (always you, through answer_build).")]
        = "auto",
        fresh: Annotated[bool, Field(description="Build anew even when a stored server covers the request "
                                     "(never reuse).")] = False,
    ) -> JobTicket:
        """Build, validate and deploy an MCP server for a capability; returns a job id at once.

        A request the repository already covers (by meaning, in any language the embedding
        model knows) is re-validated and deployed without generating code; the report says
        which stored server was reused and why each candidate was or was not. Follow it with
        build_status and build_result; report_false_reuse flags a reuse that does not do what
        was asked.

        Without a model configured on the foundry, you are the model: the build stops at
        each model request with a question (state waiting; build_status and build_result
        show it: the complete instructions and the JSON Schema of the answer). Answer it with
        answer_build: first the requirement, then the server's files (kind code); the build
        then checks and runs your draft in the sandbox exactly as a model's, and a failing
        draft comes back as a `fix` question naming what failed. A passing one is deployed
        and its tools are served here at once as <server>__<tool>.
        """
        from builder.llm.sampling import supports_sampling
        from builder.params import build_params

        params = build_params(description=description, name=name, tools=tools, dependencies=dependencies,
                              constraints=constraints, examples=examples, needs_network=needs_network,
                              priority=priority, timeout_s=timeout_s, fresh=fresh, coder=coder)
        job = foundry.queue.submit("build", params, timeout_s=timeout_s)
        if relay is not None and coder == "auto" and supports_sampling(ctx):
            # No await since submit: the job cannot have asked anything yet.
            relay.watch(job.id, ctx.session)
        return JobTicket(job_id=job.id, kind=job.kind, state=job.state,
                         next=f"build_status(job_id='{job.id}'); build_result(job_id='{job.id}', wait_s=45), again "
                              "until final, answering with answer_build any question it shows")

    @app.tool(title="Answer a build's question",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False,
                                          openWorldHint=False))
    @tool_errors
    async def answer_build(
        job_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="The waiting build's job id.")],
        question_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                          description="The id of the question build_status shows.")],
        answer: Annotated[dict[str, Any] | str, Field(description="Your answer: the JSON object the question's "
                                                      "answer_schema describes (e.g. {\"files\": {...}} for code), "
                                                      "as an object or as JSON text.")],
    ) -> JobStatus:
        """Answer the question a waiting build asks you in place of a model (build_status shows it as `question`).

        Write the answer as that model would: follow `instructions`, and give the JSON object
        `answer_schema` describes. It is checked against the schema and the build's own rules:
        an invalid answer is refused with one line per problem and the question stays open;
        after as many invalid answers as a model gets attempts (`max_invalid`) the build fails.
        A valid answer lets the build go on; this returns its new status. Follow it with
        build_result: the next question (a fix, when the draft failed its checks) or the result.
        """
        job = await foundry.answer(job_id, question_id, answer)
        return JobStatus.of(job, foundry.store.log(job_id, tail=LOG_TAIL),
                            question=foundry.store.open_question(job_id) if job.state == JobState.waiting else None)

    @app.tool(title="Deploy a server you wrote",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
    @tool_errors
    async def deploy_server(
        path: Annotated[str, Field(min_length=1, max_length=4096, description="A server directory you wrote, "
                                   "holding server.py (and requirements.txt or pyproject.toml; cases.json is run "
                                   "when present).")],
        name: Annotated[str, Field(min_length=1, max_length=64, description="The name to deploy it under: a "
                                   "lowercase Python identifier. An existing name gets a new version.")],
        needs_network: Annotated[bool, Field(description="The server needs the network (when validated and when "
                                             "it runs).")] = False,
        secrets: Annotated[list[str] | None, Field(max_length=30, description="Environment variables it receives "
                                                   "when it runs, from the foundry's environment or the data dir's "
                                                   "secrets.env (names only).")] = None,
        description: Annotated[str | None, Field(max_length=8000, description="What it does, for search; default: "
                                                 "server.py's docstring.")] = None,
    ) -> JobTicket:
        """Vet and deploy a server directory you wrote: the validator and security scan a build passes, then a new
        version, a case in the repository, and its tools served here at once; returns a job id at once."""
        from builder.params import deploy_params

        params = deploy_params(path, name, needs_network, secrets, description)
        foundry.backend  # noqa: B018 - an unusable sandbox backend is refused now, not inside the job
        job = foundry.queue.submit("deploy", params)
        return JobTicket(job_id=job.id, kind=job.kind, state=job.state,
                         next=f"build_result(job_id='{job.id}', wait_s=45), again until final; then its tools are listed as "
                              f"{name}__<tool>")

    @app.tool(title="List deployed servers",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def list_servers() -> ServerList:
        """Deployed servers with their versions and the current one."""
        return ServerList(servers=deploy.list_servers(servers_dir))

    @app.tool(title="Deployed server details",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def get_server(name: Name, version: Version = None) -> ServerDetails:
        """A deployed server's manifest (tools, dependencies, hashes, validation, the client config snippet) and the
        names its tools, prompts and resources have here."""
        return ServerDetails.model_validate(with_details(deploy.get_server(servers_dir, name, version)))

    @app.tool(title="Remove a deployed server",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False,
                                          openWorldHint=False))
    @tool_errors
    async def remove_server(name: Name, version: Version = None) -> Removed:
        """Remove one version of a deployed server, or all of its versions (and its state dir) when no version is
        given."""
        removed = deploy.remove_server(servers_dir, name, version)
        return Removed(name=name, removed_versions=removed, state=deploy.state_note(servers_dir, name, "remove"))

    @app.tool(title="Roll back a deployed server",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                          openWorldHint=False))
    @tool_errors
    async def rollback_server(name: Name, version: Version = None) -> RolledBack:
        """Make an older version current (the one before the current version by default); its state dir is kept."""
        manifest = deploy.rollback_server(servers_dir, name, version)
        return RolledBack.model_validate({**with_details(manifest),
                                          "state": deploy.state_note(servers_dir, name, "rollback")})

