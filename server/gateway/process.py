"""One deployed server version, run in the sandbox on demand and held open as an MCP client session.

Life: it starts on the first call (concurrent first calls wait for the one start), stays
warm, and stops when it has been idle for `idle_timeout_s`, when a call passes
`call_timeout_s`, when another version becomes current, or when `serve` ends. A process
that dies (a crash mid-call) fails the calls in flight with a clear error and is started
again by the next call. Stopping closes its stdin first, so a server that keeps a SQLite
file in its state dir shuts down cleanly. Calls share the one session and run
concurrently. Each run has a sandbox of its own (launch.served: a cgroup and a /tmp), made
before the process starts and removed, with whatever the server left running in it,
once the process has ended, whichever way it ended.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from builder.config import ENV_VARS, Settings
from sandbox.backends.base import Backend
from sandbox.limits import LimitState
from sandbox.stdio import ServerIO, stdio_transport
from server.gateway.errors import GatewayError
from server.gateway.launch import served
from server.gateway.mounts import Mount

T = TypeVar("T")
STDERR_TAIL = 1500
log = logging.getLogger("mcp_foundry.gateway")


class _Life:
    """One run of the server process: from its start to its end."""

    def __init__(self) -> None:
        self.io = ServerIO()
        self.client: Client | None = None
        self.stop = anyio.Event()
        self.ended = anyio.Event()
        self.stop_reason: str | None = None
        """Why we stopped it (idle, a call timed out, redeployed, ...); None while it runs or when it died alone."""
        self.last_used = time.monotonic()
        self.inflight = 0
        self.limits: list[LimitState] = []
        """The limits in force for this run (set once its sandbox is made)."""

    @property
    def usable(self) -> bool:
        return self.client is not None and not self.ended.is_set() and not self.stop.is_set()

    def end(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    def stderr_tail(self) -> str:
        text = self.io.stderr_text().strip()
        return text[-STDERR_TAIL:] if text else "(empty)"


class ServerProcess:
    """A mounted server's process, started when needed, shared by every call to it."""

    def __init__(self, mount: Mount, settings: Settings, backend: Callable[[], Backend],
                 task_group: anyio.abc.TaskGroup):
        self.mount = mount
        self.settings = settings
        self._backend = backend
        self._tg = task_group
        self._life: _Life | None = None
        self._start_lock = anyio.Lock()

    @property
    def label(self) -> str:
        return f"{self.mount.name} v{self.mount.version}"

    # -- calls ---------------------------------------------------------------------------------------------------
    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Call one tool of the server; GatewayError when it cannot answer."""
        result = await self._request(f"the call to {tool}", lambda c: c.session.call_tool(tool, arguments))
        self._check_size(result, f"the result of {tool}")
        return result

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        """Read one of the server's resources (its own URI)."""
        result = await self._request(f"reading {uri}", lambda c: c.session.read_resource(uri))
        self._check_size(result, f"the resource {uri}")
        return result

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        """Render one of the server's prompts."""
        return await self._request(f"the prompt {name}", lambda c: c.session.get_prompt(name, arguments))

    async def stop(self, reason: str) -> None:
        """Stop the process if it runs (calls in flight fail, saying `reason`) and wait until it has ended."""
        life = self._life
        if life is not None:
            life.end(reason)
            await life.ended.wait()

    async def _request(self, what: str, send: Callable[[Client], Awaitable[T]]) -> T:
        life = await self._started()
        assert life.client is not None
        life.inflight += 1
        timeout = self.settings.call_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await send(life.client)
        except TimeoutError:
            life.end(f"a call passed the {timeout:g} s call timeout")
            raise GatewayError(f"{self.label}: {what} did not answer within {timeout:g} s (the call timeout, "
                               f"{ENV_VARS['call_timeout_s']}); the call was cut and the server stopped; it starts "
                               "again on the next call") from None
        except MCPError as e:
            if e.error.code != types.CONNECTION_CLOSED:  # an error the server answered: it still runs
                raise GatewayError(f"{self.label}: {what} failed: {e}") from None
            raise await self._ended_error(life, what) from None
        except RuntimeError as e:  # the SDK refused the answer (structured content against the output schema)
            raise GatewayError(f"{self.label}: {what} answered wrongly: {e}") from None
        except Exception as e:  # a broken pipe, a malformed message: the session is no longer trustworthy
            if life.usable:
                life.end(f"{what} broke the session ({type(e).__name__})")
            raise GatewayError(f"{self.label}: {what} failed: {type(e).__name__}: {str(e)[:300]}; the server was "
                               "stopped and starts again on the next call") from None
        finally:
            life.inflight -= 1
            life.last_used = time.monotonic()

    async def _ended_error(self, life: _Life, what: str) -> GatewayError:
        with anyio.move_on_after(3):  # the exit code and the last of stderr are on their way
            await life.ended.wait()
        if not life.ended.is_set():  # it closed its side of the session yet runs on: it is no use any more
            life.end("it closed the session")
            await life.ended.wait()
        if life.stop_reason is not None:
            return GatewayError(f"{self.label}: {what} was cut: the server was stopped because {life.stop_reason}; "
                                "it starts again on the next call")
        code = life.io.returncode
        return GatewayError(f"{self.label}: the server crashed during {what} (exit code {code}); it starts again on "
                            f"the next call. Its stderr ends with:\n{life.stderr_tail()}")

    def _check_size(self, result: Any, what: str) -> None:
        cap = self.settings.output_cap_kb * 1024
        size = len(result.model_dump_json(by_alias=True, exclude_none=True))
        if size > cap:
            raise GatewayError(f"{self.label}: {what} is {size} bytes, over the output cap of {cap} bytes "
                               f"({ENV_VARS['output_cap_kb']}={self.settings.output_cap_kb}); ask for less")

    # -- life ----------------------------------------------------------------------------------------------------
    async def _started(self) -> _Life:
        life = self._life
        if life is not None and life.usable:
            return life
        async with self._start_lock:
            life = self._life
            if life is not None and life.usable:
                return life
            if life is not None:
                await life.ended.wait()  # a stopping process (it may hold the state dir's files) ends first
            life = _Life()
            self._life = life
            try:
                await self._tg.start(self._run, life)
            except BaseException:
                self._life = None
                raise
            return life

    async def _run(self, life: _Life, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The process's whole life; raises (to the starting caller) only before it has answered initialize."""
        started, failure, init_scope = False, None, None
        try:
            # The sandbox outlives the process: leaving `served` removes the cgroup with anything still in it.
            async with served(self.mount.manifest, self.settings, self._backend()) as box:
                life.limits = box.limits
                client = Client(stdio_transport(box.launch, box.spec.workdir, life.io), mode="legacy", cache=None,
                                client_info=types.Implementation(name="mcp-foundry-gateway", version="0.1.0"))
                t0 = time.monotonic()
                with anyio.CancelScope(deadline=anyio.current_time() + self.settings.init_timeout_s) as init_scope:
                    async with client:
                        init_scope.deadline = math.inf
                        life.client, started = client, True
                        log.info("%s started in %.2f s", self.label, time.monotonic() - t0)
                        missing = [state.name for state in life.limits if not state.in_force]
                        if missing:
                            log.warning("%s runs without its %s limit(s) (see `mcp-foundry doctor`)", self.label,
                                        ", ".join(missing))
                        task_status.started()
                        async with anyio.create_task_group() as watch:
                            watch.start_soon(self._watch_exit, life, watch.cancel_scope)
                            watch.start_soon(self._watch_idle, life)
                            await life.stop.wait()
                            watch.cancel_scope.cancel()
        except GatewayError:
            raise
        except Exception as e:  # the process's failures are reported, never raised into the gateway
            failure = e
        finally:
            life.ended.set()
        if not started:
            raise self._start_error(life, failure, init_scope is not None and init_scope.cancelled_caught)
        log.info("%s stopped: %s", self.label, life.stop_reason or f"exited with code {life.io.returncode}"
                 + (f" ({type(failure).__name__}: {failure})" if failure else ""))

    def _start_error(self, life: _Life, failure: Exception | None, timed_out: bool) -> GatewayError:
        code = life.io.returncode
        if timed_out:  # we stopped it for being late: its exit code says nothing about it
            why = (f"no answer to initialize within {self.settings.init_timeout_s:g} s "
                   f"({ENV_VARS['init_timeout_s']})")
        elif code is not None:
            why = f"it exited with code {code} before answering initialize"
        else:
            why = f"initialize failed: {type(failure).__name__}: {str(failure)[:300]}"
        return GatewayError(f"{self.label} failed to start: {why}. Its stderr ends with:\n{life.stderr_tail()}")

    async def _watch_exit(self, life: _Life, scope: anyio.CancelScope) -> None:
        process = life.io.process
        if process is not None:
            await process.wait()
        scope.cancel()

    async def _watch_idle(self, life: _Life) -> None:
        idle = self.settings.idle_timeout_s
        while True:
            left = life.last_used + idle - time.monotonic()
            if left <= 0 and life.inflight == 0:
                life.end(f"it was idle for {idle:g} s")
                return
            await anyio.sleep(left if left > 0 else idle)  # a long call in flight: look again later
