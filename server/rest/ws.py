"""WS /api/v1/build/{id}/ws: a job's progress and log lines as they happen, then its final state, then close.

Everything is read from the job store, so it works for a job run by any worker, on any
machine that shares the store. One poller per front end watches the store's change
counter for every open socket (not one per socket), and a socket reads its job only
when the store moved, or at least every second: a worker killed with -9 writes nothing,
and its job is seen `interrupted` only by reading it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from builder.errors import InputError
from builder.jobs import Job, JobStore
from server.rest.models import ErrorBody, Final, FinalData, LogData, LogLine, ProgressData, ProgressUpdate

POLL_S = 0.05
"""How often the one poller asks the store whether anything changed, while a socket is open."""
READ_EVERY_S = 1.0
"""A socket reads its job at least this often, changed or not."""

T = TypeVar("T")


async def io(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (synchronous, possibly networked) job store call off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class ChangeFeed:
    """One poller of `store.changes()` shared by every open socket; run it in the server's lifespan."""

    def __init__(self, store: JobStore, poll_s: float = POLL_S):
        self.store, self.poll_s = store, poll_s
        self.version = 0
        """Moves whenever the store moved (a socket compares it with the one it last saw)."""
        self._moved = anyio.Event()
        self._watchers = 0
        self._wanted = anyio.Event()

    async def run(self) -> None:
        """Poll while anyone watches, until cancelled."""
        seen = None
        while True:
            if not self._watchers:
                await self._wanted.wait()
            changes = await io(self.store.changes)
            if changes != seen:
                seen = changes
                self.version += 1
                self._moved.set()
                self._moved = anyio.Event()
            await anyio.sleep(self.poll_s)

    async def wait(self, after: int, timeout: float) -> int:
        """The feed's version once it is past `after`, or after `timeout` seconds, whichever comes first."""
        if self.version == after:
            self._watchers += 1
            self._wanted.set()
            try:
                with anyio.move_on_after(timeout):
                    await self._moved.wait()
            finally:
                self._watchers -= 1
                if not self._watchers:
                    self._wanted = anyio.Event()
        return self.version


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def follow(websocket: WebSocket, store: JobStore, feed: ChangeFeed) -> None:
    """Serve one socket: deny an unknown job with 404, else stream it to its final message and close."""
    job_id = websocket.path_params["build_id"]
    try:
        job = await io(store.get, job_id)
    except InputError as e:
        await _deny(websocket, 404, f"GET /api/v1/build/{job_id[:64]}/ws: {e}")
        return
    await websocket.accept()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_closed, websocket, tg.cancel_scope)
            await _stream(websocket, store, feed, job)
            tg.cancel_scope.cancel()
    except* WebSocketDisconnect:  # the client left while a message was on its way: nothing more to send
        pass


async def _stream(websocket: WebSocket, store: JobStore, feed: ChangeFeed, job: Job) -> None:
    sent_lines, last, read_rev = 0, None, None
    version = feed.version
    while True:
        if job.rev != read_rev:  # every log line bumps the job's rev: no new rev, no new line
            read_rev = job.rev
            lines = await io(store.log, job.id)
            for n, line in enumerate(lines[sent_lines:], sent_lines + 1):
                await websocket.send_json(LogLine(data=LogData(build_id=job.id, n=n, line=line)).model_dump())
            sent_lines = max(sent_lines, len(lines))
        now = (job.state, job.phase, job.progress, job.message)
        if now != last:
            last = now
            await websocket.send_json(ProgressUpdate(data=ProgressData(
                build_id=job.id, phase=job.phase, progress=job.progress, message=job.message,
                timestamp=_iso(job.updated_at))).model_dump())
        if job.final:
            await websocket.send_json(Final(data=FinalData(
                build_id=job.id, status=job.state, success=job.state == "succeeded", error_message=job.error,
                timestamp=_iso(job.finished_at or job.updated_at))).model_dump(mode="json"))
            await websocket.close(1000)
            return
        version = await feed.wait(version, READ_EVERY_S)
        job = await io(store.get, job.id)


async def _until_closed(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Read (and drop) what the client sends, so that its close is noticed and the stream stops."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
    scope.cancel()


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a handshake with an HTTP status and a JSON body where the server can, else close with 4000 + status."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(ErrorBody(error=message).model_dump(), status_code=status))
    else:
        await websocket.close(4000 + status, message[:120])
