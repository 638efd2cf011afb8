"""Streamable HTTP transport with a bearer token checked on every request."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

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
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token: anyone on the network could run builds."""
    if not is_loopback(host) and not token:
        raise InputError("--http", f"binding {host} (not loopback) needs a bearer token",
                         "set MCP_FOUNDRY_HTTP_TOKEN or pass --token, or bind 127.0.0.1")


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, else 401."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                body = b'{"error": "unauthorized: send Authorization: Bearer <token> (the MCP_FOUNDRY_HTTP_TOKEN)"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_http(app: Any, host: str, port: int, token: str | None) -> None:
    """Serve `app` (an MCPServer) over streamable HTTP at http://host:port/mcp until cancelled.

    A non-loopback bind without a token is refused: anyone on the network could run builds.
    """
    import uvicorn

    check_bind(host, token)
    asgi = app.streamable_http_app(host=host)
    if token:
        asgi = BearerAuth(asgi, token)
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
