"""Cassettes of recorded LLM exchanges: a provider that replays them and a wrapper that records them.

A cassette is a JSONL file; each line is one exchange:
{"hash": ..., "request": {"messages": [...], "json_schema": ..., "schema_name": ...},
 "response": {"text": ..., "model": ..., "prompt_tokens": ..., "completion_tokens": ...}}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from builder.errors import LLMError
from builder.llm.base import ChatMessage, Completion, LLMProvider


class Exchange(BaseModel):
    """One recorded request and its response, as stored on a cassette line."""

    hash: str
    request: dict[str, Any]
    response: Completion


def request_hash(messages: list[ChatMessage], json_schema: dict[str, Any] | None) -> str:
    """Stable sha256 of what decides an answer: the messages and the schema (not temperature)."""
    canonical = json.dumps(
        {"messages": [m.model_dump() for m in messages], "json_schema": json_schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_cassette(path: Path) -> dict[str, list[Completion]]:
    """Read a cassette into hash -> responses in recorded order; LLMError names the bad line."""
    if not path.is_file():
        raise LLMError(
            f"cassette {path} does not exist: record one with provider 'openai' and MCP_FOUNDRY_LLM_CASSETTE set, "
            "or point MCP_FOUNDRY_LLM_CASSETTE at an existing .jsonl cassette"
        )
    table: dict[str, list[Completion]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ex = Exchange.model_validate_json(line)
        except ValidationError as e:
            raise LLMError(
                f"cassette {path} line {lineno} is not a recorded exchange: {e.errors()[0]['msg']}"
            ) from e
        table.setdefault(ex.hash, []).append(ex.response)
    return table


class ReplayProvider:
    """Answers from a cassette; an unrecorded request is an error, never an invented answer.

    A request recorded several times gets its answers in recorded order; after the last one it keeps
    getting the last one (a build that repeats a request expects the model's latest behaviour).
    """

    name = "replay"

    def __init__(self, cassette: Path | str):
        self.cassette = Path(cassette)
        self._table = load_cassette(self.cassette)
        self._served: dict[str, int] = {}
        self.calls = 0
        """Requests answered from the cassette."""

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Return the recorded response for this request; LLMError naming hash and cassette if none."""
        key = request_hash(messages, json_schema)
        answers = self._table.get(key)
        if not answers:
            raise LLMError(
                f"request {key} is not recorded in cassette {self.cassette} "
                f"({len(self._table)} recorded request(s)); re-record the cassette with a real provider "
                "(MCP_FOUNDRY_LLM_PROVIDER=openai plus MCP_FOUNDRY_LLM_CASSETTE) after changing prompts"
            )
        i = self._served.get(key, 0)
        self._served[key] = i + 1
        self.calls += 1
        return answers[min(i, len(answers) - 1)].model_copy()


class RecordingProvider:
    """Wraps a real provider and appends every exchange to a cassette (created if missing)."""

    def __init__(self, inner: LLMProvider, cassette: Path | str):
        self.inner = inner
        self.name = inner.name
        self.cassette = Path(cassette)
        self._lock = anyio.Lock()

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask the inner provider, then append the exchange to the cassette."""
        completion = await self.inner.complete(
            messages,
            json_schema=json_schema,
            schema_name=schema_name,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        ex = Exchange(
            hash=request_hash(messages, json_schema),
            request={
                "messages": [m.model_dump() for m in messages],
                "json_schema": json_schema,
                "schema_name": schema_name,
            },
            response=completion,
        )
        # One line per write under a lock, so concurrent calls never interleave half-lines.
        async with self._lock:
            self.cassette.parent.mkdir(parents=True, exist_ok=True)
            with self.cassette.open("a", encoding="utf-8") as f:
                f.write(ex.model_dump_json() + "\n")
        return completion

    def __getattr__(self, item: str) -> Any:
        # Expose the inner provider's attributes (retry_log, model, prices) for reports.
        return getattr(self.inner, item)
