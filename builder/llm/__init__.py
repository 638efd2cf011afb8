"""LLM providers behind one small protocol (see base.LLMProvider).

`client.ClientProvider` is the calling agent as the model (questions in the job store,
answered through `answers`); `openai_compat`, `replay` and `sampling` are the others.
"""

from builder.llm.base import ChatMessage, Completion, LLMProvider, Usage
from builder.llm.config import HOW_TO_CONFIGURE, LLMConfig, make_provider, require_provider
from builder.llm.structured import complete_json

__all__ = [
    "HOW_TO_CONFIGURE",
    "ChatMessage",
    "Completion",
    "LLMConfig",
    "LLMProvider",
    "Usage",
    "complete_json",
    "make_provider",
    "require_provider",
]
