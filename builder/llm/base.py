"""The one protocol every LLM provider implements, and per-build usage accounting."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    """One message of a chat exchange."""

    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    """What a provider returns for one request."""

    text: str
    """The assistant's reply (JSON text when a schema was asked for)."""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """Cost priced by the provider from its configured per-1k prices; None when it has no prices."""


@runtime_checkable
class LLMProvider(Protocol):
    """Answers a chat request; optionally constrained to a JSON schema."""

    name: str
    """Short name for reports: "openai", "sampling", "replay" or "client"."""

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Return the model's reply to `messages`; raise builder.errors.LLMError on failure."""
        ...


class Usage(BaseModel):
    """Token and cost totals for one build."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = Field(0.0, description="Estimated from configured per-1k-token prices; 0 when unknown.")

    def add(self, c: Completion, *, price_in_per_1k: float = 0.0, price_out_per_1k: float = 0.0) -> None:
        """Count one completion; explicit prices win over the cost the provider priced itself."""
        self.calls += 1
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        if price_in_per_1k or price_out_per_1k:
            self.cost_usd += (
                c.prompt_tokens / 1000 * price_in_per_1k + c.completion_tokens / 1000 * price_out_per_1k
            )
        elif c.cost_usd is not None:
            self.cost_usd += c.cost_usd
