"""Telling every open session, stdio and HTTP, that the mounted lists changed.

A session on a handshake-era protocol gets `notifications/tools/list_changed` (and the
resources and prompts ones) on its connection: the middleware below remembers each such
connection when its `notifications/initialized` arrives. A session on the 2026-07-28
protocol receives change notifications only on the `subscriptions/listen` streams it
opened, so the same change is also published on the server's subscription bus.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    SubscriptionBus,
    ToolsListChanged,
)

log = logging.getLogger("mcp_foundry.gateway")


class Sessions:
    """Server middleware that keeps the open handshake-era connections, and the fan-out of a change to all."""

    def __init__(self, bus: SubscriptionBus):
        self.bus = bus
        # Weak: a connection that closed (an HTTP session that ended) is forgotten with it.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            # The SDK keeps the per-connection object on the session privately; it is what outlives this message.
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None:
                self._connections.add(connection)
        return result

    @property
    def open(self) -> int:
        """Handshake-era connections known to be open."""
        return len(self._connections)

    async def changed(self, kinds: set[str]) -> None:
        """Send the list_changed notification of each kind to every session."""
        for connection in list(self._connections):
            if "tools" in kinds:
                await connection.send_tool_list_changed()
            if "resources" in kinds:
                await connection.send_resource_list_changed()
            if "prompts" in kinds:
                await connection.send_prompt_list_changed()
        for kind, event in (("tools", ToolsListChanged), ("resources", ResourcesListChanged),
                            ("prompts", PromptsListChanged)):
            if kind in kinds:
                await self.bus.publish(event())
        log.info("told %d handshake-era session(s) and the listen streams: %s changed", self.open,
                 ", ".join(sorted(kinds)))
