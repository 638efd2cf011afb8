"""Streamable HTTP transport: a bearer token checked on every request, or, without one, Host and Origin checks.

Without a token, anything that can make a browser send a request to the port could drive
the foundry: a page on evil.example whose name is rebound to 127.0.0.2 (DNS rebinding)
sends `Host: evil.example` and `Origin: http://evil.example`. So every request to a bind
without a token must name a loopback host (all of 127.0.0.0/8, ::1, localhost) in Host,
and in Origin when it sends one. The check wraps the whole ASGI app, so every route
served on the same server (the MCP endpoint and any added later) gets it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from builder.errors import InputError

Scope = dict[str, Any]


def parse_bind(value: str) -> tuple[str, int]:
    """Parse `[HOST:]PORT` (host defaults to 127.0.0.1); InputError names --http on bad input."""
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise InputError("--http", f"{value!r} is not [HOST:]PORT", "e.g. 8765, 127.0.0.1:8765 or 0.0.0.0:8765") from None
    return host, port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (all of 127.0.0.0/8, and ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host name of a Host header value: `[::1]:8765` -> `::1`, `127.0.0.2:8765` -> `127.0.0.2`."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() else header


class LoopbackGuard:
    """ASGI middleware for binds without a token: Host (and Origin, when sent) must name a loopback host.

    A wrong Host gets 421, a wrong Origin 403, each with a JSON body that says why.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            problem = self._problem(headers.get(b"host", ""), headers.get(b"origin"))
            if problem is not None:
                status, message = problem
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
                    return
                body = json.dumps({"error": message}).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _problem(host: str, origin: str | None) -> tuple[int, str] | None:
        if not is_loopback(host_of(host)):
            return 421, (f"Host {host[:100]!r} is not a loopback address; without a token this server answers only "
                         "requests for 127.0.0.0/8, [::1] or localhost (set --token to serve other names)")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not is_loopback(parts.hostname or ""):
                return 403, (f"Origin {origin[:100]!r} is not a loopback page; without a token this server answers "
                             "only pages of 127.0.0.0/8, [::1] or localhost (set --token to allow others)")
        return None


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token: anyone on the network could run builds."""
    if not is_loopback(host) and not token:
        raise InputError("--http", f"binding {host} (not loopback) needs a bearer token",
                         "set MCP_FOUNDRY_HTTP_TOKEN or pass --token, or bind 127.0.0.1")


class BearerAuth:
    """ASGI middleware: every HTTP request and WebSocket handshake must carry `Authorization: Bearer <token>`,
    else 401 (a handshake is refused with 401 where the server can send a status, else closed with 1008)."""

    UNAUTHORIZED = b'{"error": "unauthorized: send Authorization: Bearer <token> (the MCP_FOUNDRY_HTTP_TOKEN)"}'

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                await self._refuse(scope, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Any) -> None:
        start = {"status": 401, "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]}
        if scope["type"] == "http":
            await send({"type": "http.response.start", **start})
            await send({"type": "http.response.body", "body": self.UNAUTHORIZED})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", **start})
            await send({"type": "websocket.http.response.body", "body": self.UNAUTHORIZED})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})


async def serve_http(app: Any, host: str, port: int, token: str | None,
                     mount: Callable[[Any], None] | None = None) -> None:
    """Serve `app` (an MCPServer) over streamable HTTP at http://host:port/mcp until cancelled.

    `mount` adds routes beside /mcp to the Starlette app (the REST face does); they get the
    same checks. A non-loopback bind without a token is refused: anyone on the network could
    run builds. A bind without a token answers only requests whose Host and Origin are
    loopback (see LoopbackGuard).
    """
    import uvicorn

    check_bind(host, token)
    from mcp.server.transport_security import TransportSecuritySettings

    # One policy for every bind: the SDK's own Host check covers only 127.0.0.1, localhost and ::1.
    asgi = app.streamable_http_app(host=host, transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=False))
    if mount is not None:
        mount(asgi)
    asgi = BearerAuth(asgi, token) if token else LoopbackGuard(asgi)
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
