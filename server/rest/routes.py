"""The REST routes: thin functions that run the MCP face's own tools or read the job store, and shape the answer.

A route that takes input runs the very MCP tool that takes the same input (request_build,
validate_server, get_server, search_repository): the same strict argument types, the same
pydantic rules, the same builder.params checks and the same words when something is
wrong, as HTTP 422 (404 for a name in the path that does not exist).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from builder.errors import BuildError, InputError
from builder.jobs import Job, JobState
from builder.service import Foundry
from server.errors import argument_problems, strict_type_errors
from server.models import QuestionView
from server.rest import facts
from server.rest.errors import ApiError, from_tool_error, internal, rejected, renamed_field
from server.rest.estimate import Estimator
from server.rest.models import BuildAccepted, BuildResult, BuildStatus, Health
from server.rest.ws import io

LOG_TAIL = 20
"""Log lines in a status answer."""
CANCEL_WAIT_S = 30
"""DELETE waits this long for a running job to unwind (its sandbox stopped, its deploy undone) before it answers."""
MAX_BODY = 1_000_000
"""Bytes of JSON a request body may hold."""

Endpoint = Callable[[Request], Awaitable[Response]]


def json_answer(model: BaseModel, status: int = 200, **headers: str) -> JSONResponse:
    """A pydantic model as a JSON response."""
    return JSONResponse(model.model_dump(mode="json"), status_code=status, headers=headers or None)


def answers(fn: Endpoint) -> Endpoint:
    """Turn ApiError, an unknown job id and a crash into JSON error answers."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as e:
            return e.response()
        except InputError as e:
            if e.field == "job_id":
                return ApiError(404, str(e)).response()
            return rejected([str(e)]).response()
        except Exception as e:  # a bug of ours: logged with its traceback, answered without it
            return internal(f"{request.method} {request.url.path}", e).response()

    endpoint.__name__ = fn.__name__
    endpoint.__doc__ = fn.__doc__
    return endpoint


class RestFace:
    """The routes' shared state: the foundry, the MCP server whose tools they run, and the estimator."""

    def __init__(self, foundry: Foundry, mcp: Any):
        self.foundry, self.mcp = foundry, mcp
        self.store, self.queue = foundry.store, foundry.queue
        self.estimator = Estimator(foundry.store)

    # -- running the MCP face's tools -----------------------------------------------------------------------------
    async def run_tool(self, name: str, arguments: dict[str, Any], *, path_fields: Collection[str] = (),
                       renamed: dict[str, str] | None = None) -> Any:
        """Run one of the foundry's own MCP tools as its MCP face would, raising ApiError for what it refuses."""
        tool = self.mcp.own_tool(name)
        problems = strict_type_errors(tool.parameters, arguments)
        if problems:
            # Every bad field at once: the other fields' schema problems too (a missing one, a bound).
            flagged = {line.partition(":")[0] for line in problems}
            try:
                tool.fn_metadata.arg_model.model_validate(arguments)
            except ValidationError as e:
                problems += [line for line in argument_problems(e, tool.parameters)
                             if line.partition(":")[0].partition(".")[0] not in flagged]
            fields = {line.partition(":")[0] for line in problems}
            lines = [f"{name}: {renamed_field(line, renamed)}" for line in problems]
            raise ApiError(404, "\n".join(lines), lines) if fields <= set(path_fields) else rejected(lines)
        try:
            return await tool.run(arguments, context=None)
        except ToolError as e:
            raise from_tool_error(name, e, tool.parameters, path_fields=path_fields, renamed=renamed) from None

    async def body(self, request: Request, tool: str) -> dict[str, Any]:
        """The request's JSON object; 422 when it is not one."""
        declared = request.headers.get("content-length", "")
        raw, size = b"", int(declared) if declared.isdigit() else 0
        if size <= MAX_BODY:  # a body announced too large is refused unread
            raw = await request.body()
            size = len(raw)
        if size > MAX_BODY:
            raise ApiError(413, f"{tool}: the body is {size} bytes (accepted: at most {MAX_BODY} bytes of JSON)")
        try:
            value = json.loads(raw or b"{}")
        except ValueError as e:
            raise rejected([f"{tool}: body: not JSON: {e} (accepted: a JSON object of {tool}'s arguments)"]) from None
        if not isinstance(value, dict):
            raise rejected([f"{tool}: body: must be a JSON object, got {type(value).__name__} (accepted: a JSON "
                            f"object of {tool}'s arguments)"])
        return value

    # -- jobs -----------------------------------------------------------------------------------------------------
    async def submit(self, request: Request, tool: str) -> Response:
        ticket = await self.run_tool(tool, await self.body(request, tool))
        job = await io(self.store.get, ticket.job_id)
        eta = await io(self.estimator.remaining_s, job)
        base = f"/api/v1/build/{job.id}"
        accepted = BuildAccepted(
            build_id=job.id, estimated_completion=_iso(time.time() + (eta or 0.0)),
            message=f"{job.kind} job queued; follow it at {base}/status or {base}/ws, read {base}/result once final, "
                    f"cancel it with DELETE {base}")
        return json_answer(accepted, 202, Location=f"{base}/status")

    async def build(self, request: Request) -> Response:
        """POST /api/v1/build: queue a build (the body is request_build's arguments)."""
        return await self.submit(request, "request_build")

    async def validate(self, request: Request) -> Response:
        """POST /api/v1/validate: queue a validation (the body is validate_server's arguments)."""
        return await self.submit(request, "validate_server")

    async def status(self, request: Request) -> Response:
        """GET /api/v1/build/{id}/status."""
        return json_answer(await io(self._status, request))

    def _status(self, request: Request) -> BuildStatus:
        return self._status_of(self._read_job(request))

    def _status_of(self, job: Job) -> BuildStatus:
        """The status of the job (store reads in one go: a thread hop each would cost more than the reads)."""
        logs = self.store.log(job.id, tail=LOG_TAIL)
        phase = f"{job.phase}: {job.message}" if job.message and job.message != job.phase else job.phase
        note = self.queue.note(job)
        asked = self.store.open_question(job.id) if job.state == JobState.waiting else None
        question = None
        if asked is not None:
            question = QuestionView.of(asked).model_copy(update={"answer_with": (
                f"POST /api/v1/build/{job.id}/answer with {{\"question_id\": \"{asked.id}\", \"answer\": {{...}}}}: "
                "a JSON object valid against answer_schema")})
        return BuildStatus(build_id=job.id, status=job.state, progress=job.progress,
                           current_phase=f"{phase} ({note})" if note else phase, logs=logs,
                           estimated_remaining=self.estimator.remaining_s(job), worker=job.worker, question=question)

    async def result(self, request: Request) -> Response:
        """GET /api/v1/build/{id}/result: 409 until the job is final."""
        job = await self._job(request)
        if not job.final:
            raise ApiError(409, f"job {job.id} is {job.state.value}, not final: its result exists once it ends; "
                           f"follow GET /api/v1/build/{job.id}/status or the WebSocket /api/v1/build/{job.id}/ws")
        return json_answer(BuildResult(build_id=job.id, status=job.state, success=job.state == "succeeded",
                                       report=job.result, error_message=job.error, build_metrics=facts.metrics(job),
                                       test_results=facts.test_results(job)))

    async def cancel(self, request: Request) -> Response:
        """DELETE /api/v1/build/{id}: 200 once the job has unwound, 202 while it still does, 409 when already final."""
        job = await self._job(request)
        if job.final:
            raise ApiError(409, f"job {job.id} is already {job.state.value}; there is nothing to cancel")
        try:
            job = await self.queue.cancel(job.id, wait_s=CANCEL_WAIT_S)
            status = 200
        except BuildError:  # asked, but its worker has not stopped it yet: the request stays recorded
            job, status = await io(self.store.get, job.id), 202
        logs = await io(self.store.log, job.id, tail=LOG_TAIL)
        return json_answer(BuildStatus(build_id=job.id, status=job.state, progress=job.progress,
                                       current_phase=job.phase, logs=logs, estimated_remaining=None if not job.final
                                       else 0.0, worker=job.worker), status)

    async def answer(self, request: Request) -> Response:
        """POST /api/v1/build/{id}/answer: answer the build's open question (answer_build); 409 unless it waits.

        200 with the build's status once its worker has taken the answer up; 422, one line per
        problem, for an answer that is not valid (the question stays open, the refusal counted)
        or a question id that is not the open one.
        """
        body = await self.body(request, "answer_build")
        job = await self._job(request)
        if "job_id" in body and body["job_id"] != job.id:
            raise rejected([f"answer_build: job_id: the body names job {body['job_id']!r} but the path {job.id!r} "
                            "(accepted: no job_id in the body; the path names the job)"])
        if job.state != JobState.waiting:
            raise ApiError(409, f"job {job.id} is {job.state.value}, not waiting for an answer: only a build whose "
                           f"status reads waiting and shows a question takes one (GET /api/v1/build/{job.id}/status)")
        await self.run_tool("answer_build", {**body, "job_id": job.id})
        return json_answer(await io(lambda: self._status_of(self.store.get(job.id))))

    async def _job(self, request: Request) -> Job:
        return await io(self._read_job, request)

    def _read_job(self, request: Request) -> Job:
        """The job the path names (a queued one makes sure a worker runs); 404 when there is none."""
        try:
            return self.queue.get(request.path_params["build_id"])
        except InputError as e:
            raise ApiError(404, f"{request.method} {request.url.path}: {e}") from None

    # -- servers, search, health ----------------------------------------------------------------------------------
    async def servers(self, request: Request) -> Response:
        """GET /api/v1/servers: deployed servers."""
        return json_answer(await self.run_tool("list_servers", {}))

    async def server(self, request: Request) -> Response:
        """GET /api/v1/servers/{name}[?version=V]: one deployed server's manifest and names here."""
        arguments = {"name": request.path_params["name"], **dict(request.query_params)}
        return json_answer(await self.run_tool("get_server", arguments, path_fields=("name", "version")))

    async def search(self, request: Request) -> Response:
        """GET /api/v1/search?q=&limit=: search the repository."""
        arguments: dict[str, Any] = {}
        if "q" in request.query_params:
            arguments["query"] = request.query_params["q"]
        if "limit" in request.query_params:
            limit = request.query_params["limit"]
            arguments["limit"] = int(limit) if limit.strip().lstrip("-").isdigit() else limit
        return json_answer(await self.run_tool("search_repository", arguments, renamed={"query": "q"}))

    async def health(self, request: Request) -> Response:
        """GET /healthz: the job store answers; how many workers are alive."""
        from importlib.metadata import version

        workers = await io(self.store.workers)
        return json_answer(Health(version=version("mcp-foundry"), store=type(self.store).__name__,
                                  workers_alive=len(workers)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")

