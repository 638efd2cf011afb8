"""The gateway: the foundry serves every deployed server's tools, resources and prompts, each server sandboxed.

`mounts` says what is mounted and under which names, `launch` the run-time policy of a
deployed server, `process` one such server held as an MCP client session, `proxy` the
Gateway that the MCP face asks, and `notify` how open sessions hear of changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.gateway.errors import GatewayError

if TYPE_CHECKING:
    from server.gateway.proxy import Gateway

__all__ = ["Gateway", "GatewayError"]


def __getattr__(name: str) -> Any:
    # Gateway (and the MCP SDK behind it, a second to import) is loaded when first asked for, so that the CLI's
    # other commands and `run`'s supervising parent (server.gateway.alone) do without it.
    if name == "Gateway":
        from server.gateway.proxy import Gateway

        return Gateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
