"""The gateway: the foundry serves every deployed server's tools, resources and prompts, each server sandboxed.

`mounts` says what is mounted and under which names, `launch` the run-time policy of a
deployed server, `process` one such server held as an MCP client session, `proxy` the
Gateway that the MCP face asks, and `notify` how open sessions hear of changes.
"""

from server.gateway.errors import GatewayError
from server.gateway.proxy import Gateway

__all__ = ["Gateway", "GatewayError"]
