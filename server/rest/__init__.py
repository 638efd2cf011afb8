"""The REST, WebSocket and metrics face, served beside `/mcp` by `serve --http` under the same auth rules.

- `routes`: the REST routes (they run the MCP face's own tools, or read the job store).
- `ws`: the WebSocket that streams a job, and the one poller of the store every socket shares.
- `metrics`: `/metrics`, derived from the job store at scrape time.
- `facts`: what a stored job tells (its metrics, validations, failure type), for results and metrics.
- `estimate`: how long a job will take.
- `models`: the answers as pydantic models; `openapi`: the document generated from them.
- `errors`: JSON error answers.

Everything reads the job store through its protocol and the front end's queue, so the face
works with any store backend and shows jobs run by any worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from builder.service import Foundry
from server.rest.errors import ApiError
from server.rest.metrics import registry_for
from server.rest.models import AnswerBody, BuildAccepted, BuildResult, BuildStatus, Health
from server.rest.openapi import Operation, document
from server.rest.routes import RestFace, answers
from server.rest.ws import ChangeFeed, follow, io

JOB = "/api/v1/build/{build_id}"

OPERATIONS = [
    Operation("POST", "/api/v1/build", "Queue a build (the body is request_build's arguments)", (202, BuildAccepted),
              (413, 422, 503), body_tool="request_build"),
    Operation("POST", "/api/v1/validate", "Queue a validation (the body is validate_server's arguments)",
              (202, BuildAccepted), (413, 422, 503), body_tool="validate_server"),
    Operation("GET", f"{JOB}/status", "A job's state, progress, phase, last log lines, estimate and worker",
              (200, BuildStatus), (404,)),
    Operation("GET", f"{JOB}/result", "A final job's report, metrics and test results (409 before)",
              (200, BuildResult), (404, 409)),
    Operation("DELETE", JOB, "Cancel a job: 200 once it has unwound, 202 while it still does", (200, BuildStatus),
              (404, 409)),
    Operation("POST", f"{JOB}/answer", "Answer the question a waiting build asks in place of a model (its status "
              "shows it); 200 with the build's status once its worker took the answer up", (200, BuildStatus),
              (404, 409, 413, 422), body_model=AnswerBody),
    Operation("GET", "/api/v1/servers", "Deployed servers", (200, None), (), ok_tool="list_servers"),
    Operation("GET", "/api/v1/servers/{name}", "One deployed server: manifest and the names it has here",
              (200, None), (404,), query=(("version", "a version number (default: the current one)", False),),
              ok_tool="get_server"),
    Operation("GET", "/api/v1/search", "Search the repository", (200, None), (422, 503),
              query=(("q", "what you need, in plain words", True), ("limit", "at most this many hits (1..20)", False)),
              ok_tool="search_repository"),
    Operation("GET", "/healthz", "The job store answers; workers alive", (200, Health)),
    Operation("GET", "/api/v1/openapi.json", "This document", (200, None)),
    Operation("GET", "/metrics", "Prometheus metrics, derived from the job store", (200, None),
              media_type="text/plain; version=0.0.4"),
    Operation("GET", f"{JOB}/ws", "WebSocket: progress_update and log messages as they happen, then final, then "
              "close (see ProgressUpdate, LogLine, Final)", (101, None), (404,),
              extra={"description": "Upgrade to a WebSocket. Messages are JSON: {type: progress_update, data: "
                     "{build_id, phase, progress, message, timestamp}}, {type: log, data: {build_id, n, line}}, and "
                     "last {type: final, data: {build_id, status, success, error_message, timestamp}}."}),
]


def mount(asgi: Any, foundry: Foundry, mcp: Any) -> None:
    """Add the REST, WebSocket and metrics routes to `asgi` (the MCP streamable HTTP Starlette app), and run the
    WebSocket change feed in its lifespan."""
    from importlib.metadata import version

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    face = RestFace(foundry, mcp)
    feed = ChangeFeed(foundry.store)
    registry = registry_for(foundry.store)
    tools = {name: (t.parameters, t.output_schema) for name in
             ("request_build", "validate_server", "list_servers", "get_server", "search_repository")
             if (t := mcp.own_tool(name)) is not None}
    spec = document(OPERATIONS, tools, version("mcp-foundry"))
    # The WebSocket's messages are part of the API, although no route answers with them as a body.
    _add_message_schemas(spec)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def metrics(request: Request) -> Response:
        return Response(await io(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)

    async def job_ws(websocket: WebSocket) -> None:
        await follow(websocket, foundry.store, feed)

    handlers = {
        ("POST", "/api/v1/build"): face.build, ("POST", "/api/v1/validate"): face.validate,
        ("GET", f"{JOB}/status"): face.status, ("GET", f"{JOB}/result"): face.result, ("DELETE", JOB): face.cancel,
        ("POST", f"{JOB}/answer"): face.answer, ("GET", "/api/v1/servers"): face.servers,
        ("GET", "/api/v1/servers/{name}"): face.server, ("GET", "/api/v1/search"): face.search,
        ("GET", "/healthz"): face.health, ("GET", "/api/v1/openapi.json"): openapi, ("GET", "/metrics"): metrics,
    }
    routes: list[Any] = [Route(op.path, answers(handlers[(op.method, op.path)]), methods=[op.method])
                         for op in OPERATIONS if op.path != f"{JOB}/ws"]
    routes.append(WebSocketRoute(f"{JOB}/ws", job_ws))
    asgi.router.routes.extend(routes)
    inner = asgi.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state, anyio.create_task_group() as tg:
            tg.start_soon(feed.run)
            yield state
            tg.cancel_scope.cancel()

    asgi.router.lifespan_context = lifespan
    asgi.exception_handlers[HTTPException] = _http_error


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) as JSON, like every other error here."""
    assert isinstance(exc, HTTPException)
    return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").response()


def _add_message_schemas(spec: dict[str, Any]) -> None:
    from server.rest.models import Final, LogLine, ProgressUpdate

    schemas = spec["components"]["schemas"]
    for model in (ProgressUpdate, LogLine, Final):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
