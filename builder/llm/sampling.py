"""Provider that asks the connected MCP client's own model (sampling/createMessage): no API key needed."""

from __future__ import annotations

import warnings
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError, NoBackChannelError
from mcp_types.version import is_version_at_least

from builder.errors import LLMError
from builder.llm.base import ChatMessage, Completion
from builder.llm.extract import extract_json_text, schema_instruction

# From this revision on, a server can no longer send requests to the client in the middle of a tool call.
_NO_MIDCALL_REQUESTS_FROM = "2026-07-28"


def supports_sampling(ctx: Any) -> bool:
    """True when the client behind `ctx` (an MCPServer Context) declared sampling and can be asked mid-call."""
    try:
        caps = ctx.client_capabilities
        version = ctx.protocol_version
    except (AttributeError, ValueError):
        return False  # no request in flight, or not a Context at all
    if caps is None or caps.sampling is None:
        return False
    return version is None or not is_version_at_least(version, _NO_MIDCALL_REQUESTS_FROM)


class SamplingProvider:
    """Answers through the client's model; the client has no structured output, so JSON is extracted.

    Token counts are 0: sampling results carry no usage figures, and guessing would mislead the accounting.
    """

    name = "sampling"

    def __init__(
        self,
        ctx: Any,
        *,
        default_max_tokens: int = 4096,
        model_hint: str | None = None,
        timeout_s: float = 600.0,
    ):
        # A Context ties each request to the tool call in flight; a bare ServerSession (what outlives the call,
        # e.g. in a background build) sends on the connection itself.
        if hasattr(ctx, "create_message"):
            self._session, self._related_id = ctx, None
        else:
            try:
                self._session, self._related_id = ctx.session, ctx.request_id
            except (AttributeError, ValueError) as e:
                raise LLMError(
                    "SamplingProvider needs an MCP Context inside a request, or a ServerSession; "
                    f"got {type(ctx).__name__}"
                ) from e
        self.default_max_tokens = default_max_tokens
        self.model_hint = model_hint
        self.timeout_s = timeout_s

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Send one sampling/createMessage request and return the client's text answer."""
        system = [m.content for m in messages if m.role == "system"]
        if json_schema is not None:
            system.append(schema_instruction(json_schema, schema_name))
        convo = [
            types.SamplingMessage(role=m.role, content=types.TextContent(type="text", text=m.content))
            for m in messages
            if m.role != "system"
        ]
        if not convo:
            raise LLMError("sampling needs at least one user or assistant message; got only system messages")
        prefs = (
            types.ModelPreferences(hints=[types.ModelHint(name=self.model_hint)]) if self.model_hint else None
        )
        # Sampling is deprecated from protocol 2026-07-28 on, but handshake-era clients still offer it and it
        # is the only key-free model we can reach; the warning is raised when the coroutine is created.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            pending = self._session.create_message(
                convo,
                max_tokens=max_tokens or self.default_max_tokens,
                system_prompt="\n\n".join(system) or None,
                temperature=temperature,
                model_preferences=prefs,
                related_request_id=self._related_id,
            )
        try:
            with anyio.fail_after(self.timeout_s):
                result = await pending
        except TimeoutError as e:
            raise LLMError(
                f"the MCP client did not answer the sampling request within {self.timeout_s:g} s"
            ) from e
        except NoBackChannelError as e:
            raise LLMError(
                "the MCP client cannot be asked to sample on this connection (protocol 2026-07-28 or later "
                "has no mid-call requests); configure an OpenAI-compatible endpoint instead"
            ) from e
        except MCPError as e:
            raise LLMError(f"the MCP client refused the sampling request: {e}") from e
        content = result.content
        if not isinstance(content, types.TextContent):
            raise LLMError(f"the MCP client answered with {type(content).__name__}, expected text content")
        text = content.text
        if json_schema is not None:
            text = extract_json_text(text) or text
        return Completion(text=text, model=result.model or "")
