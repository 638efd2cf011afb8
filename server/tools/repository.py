"""Repository tools: search_repository, report_false_reuse; the stored-case and reuse-statistics resources."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from builder.service import Foundry
from knowledge.errors import KnowledgeError
from server.errors import tool_errors


class SearchHit(BaseModel):
    """One stored case that matches, with the score of each component."""

    case_id: str
    server_name: str
    summary: str
    tools: list[str]
    dependencies: list[str]
    score: float
    components: dict[str, float]
    reason: str
    resource: str = Field(description="Read it for the full case, files included.")


class FalseReuse(BaseModel):
    """What report_false_reuse recorded."""

    job_id: str
    case_id: str
    server_name: str
    next: str


class SearchResults(BaseModel):
    """search_repository's answer, best first."""

    query: str
    hits: list[SearchHit]


def register(app: MCPServer, foundry: Foundry) -> None:
    """Add search_repository and foundry://cases/{case_id}."""

    @app.tool(title="Search the repository",
              annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    @tool_errors
    async def search_repository(
        query: Annotated[str, Field(min_length=2, max_length=2000, description="What you need, in plain words.")],
        limit: Annotated[int, Field(ge=1, le=20, description="At most this many hits.")] = 5,
        filters: Annotated[dict[str, Any] | None, Field(description="Optional: dependency (package name), "
                                                        "min_validation_pass (0..1), server_name, source "
                                                        "('starter', 'build' or 'user'), verdict.")] = None,
    ) -> SearchResults:
        """Search the stored, verified servers by meaning, words, tool features and dependencies."""
        from pydantic import ValidationError

        from builder.errors import InputError
        from knowledge.models import SearchFilters

        try:
            parsed = SearchFilters.model_validate(filters) if filters else None
        except ValidationError as e:
            err = e.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            field = SearchFilters.model_fields.get(key)
            accepted = (f"{key}: {field.description}" if field is not None and field.description
                        else "the keys " + ", ".join(SearchFilters.model_fields))
            raise InputError(f"filters.{'.'.join(map(str, err['loc']))}", err["msg"], accepted) from None

        def search() -> list[Any]:
            return foundry.knowledge.find_similar(query, limit=limit, filters=parsed)

        matches = await anyio.to_thread.run_sync(search)
        return SearchResults(query=query, hits=[
            SearchHit(case_id=m.case.id, server_name=m.case.server_name, summary=m.case.summary,
                      tools=[t.name for t in m.case.tools], dependencies=m.case.dependencies, score=m.score,
                      components=m.components.model_dump(), reason=m.reason, resource=f"foundry://cases/{m.case.id}")
            for m in matches])

    @app.tool(title="Report a false reuse",
              annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False,
                                          openWorldHint=False))
    @tool_errors
    async def report_false_reuse(
        job_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="The id of a build that was served from the repository.")],
        reason: Annotated[str, Field(min_length=3, max_length=2000, description="What the request asked for that the "
                                     "reused server does not do.")],
    ) -> FalseReuse:
        """Report that a build was served from a stored server that does not do what was asked.

        The report is counted in foundry://repository/stats, and the same request is never
        served from that server again (request it again to get a new build).
        """
        report = await anyio.to_thread.run_sync(foundry.knowledge.report_false_reuse, job_id, reason)
        return FalseReuse(job_id=job_id, case_id=report.case_id, server_name=report.server_name,
                          next="request_build with the same description builds anew")

    @app.resource("foundry://repository/stats", mime_type="application/json",
                  description="Reuse, counted: builds by outcome, reuse rate, hits by stored case, false-reuse "
                              "reports.")
    async def repository_stats() -> str:
        stats = await anyio.to_thread.run_sync(foundry.knowledge.reuse_stats)
        return stats.model_dump_json(indent=2)

    @app.resource("foundry://cases/{case_id}", mime_type="application/json",
                  description="One stored case of the repository, with its files.")
    async def stored_case(case_id: str) -> str:
        try:
            case = await anyio.to_thread.run_sync(foundry.knowledge.get_case, case_id)
        except KnowledgeError as e:
            raise ResourceNotFoundError(str(e)) from e
        return json.dumps(case.model_dump(mode="json"), indent=2)
