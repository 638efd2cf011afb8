"""Ask for a pydantic model, validate it, and re-ask with the error a bounded number of times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from builder.errors import LLMError
from builder.llm.base import ChatMessage, LLMProvider, Usage
from builder.llm.extract import extract_json_text

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Wanted:
    """What the complete_json call in progress wants: a provider that cannot be told by the schema alone reads it."""

    model: type[BaseModel]
    """The pydantic model the reply must validate against."""
    attempts_left: int
    """Replies this call still accepts, this one included, before it fails (1 on the last attempt)."""


_wanted: ContextVar[Wanted | None] = ContextVar("mcp_foundry_llm_wanted", default=None)


def wanted() -> Wanted | None:
    """The model and attempts of the complete_json call in progress in this task, if any."""
    return _wanted.get()


@contextmanager
def _wanting(value: Wanted) -> Iterator[None]:
    token = _wanted.set(value)
    try:
        yield
    finally:
        _wanted.reset(token)


async def complete_json(
    provider: LLMProvider,
    messages: list[ChatMessage],
    model_cls: type[M],
    *,
    max_attempts: int = 3,
    usage: Usage,
    temperature: float = 0.2,
    max_tokens: int | None = None,
) -> M:
    """Return `model_cls` parsed from the model's reply; re-ask with the error appended on bad output."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    schema = model_cls.model_json_schema()
    convo = list(messages)
    last_error = ""
    for attempt in range(max_attempts):
        with _wanting(Wanted(model=model_cls, attempts_left=max_attempts - attempt)):
            completion = await provider.complete(
                convo,
                json_schema=schema,
                schema_name=model_cls.__name__,
                temperature=temperature,
                max_tokens=max_tokens,
            )
        usage.add(completion)
        raw = extract_json_text(completion.text)
        try:
            if raw is None:
                raise ValueError("the reply contains no JSON object")
            return model_cls.model_validate_json(raw)
        except ValidationError as e:
            last_error = _describe(e)
        except ValueError as e:
            last_error = str(e)
        # Show the model its own answer and what was wrong with it; that converges faster than a bare retry.
        convo = [
            *convo,
            ChatMessage(role="assistant", content=completion.text),
            ChatMessage(
                role="user",
                content=f"Your reply was not valid: {last_error}\n"
                f"Answer again with only a JSON object valid against the {model_cls.__name__} schema.",
            ),
        ]
    raise LLMError(
        f"{provider.name} gave no valid {model_cls.__name__} in {max_attempts} attempt(s); last error: {last_error}"
    )


def _describe(e: ValidationError) -> str:
    """Short, model-readable list of validation problems (location and message)."""
    parts = []
    for err in e.errors()[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts) or json.dumps(e.errors(include_url=False))
