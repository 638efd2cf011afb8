"""Provider for any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, LM Studio, llama.cpp server).

Replies are streamed where the endpoint streams, so a slow model (a local CPU model writing a whole
server) may take as long as it needs while tokens keep arriving: what fails is a stall, no token
for `timeout_s`. An endpoint that does not stream gets `timeout_s` for its whole answer.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from builder.errors import LLMError
from builder.llm.base import ChatMessage, Completion
from builder.llm.extract import extract_json_text, schema_instruction
from builder.llm.progress import StreamProgress, report

DEFAULT_TIMEOUT_S = 600.0
"""Seconds without a token (streaming) or without the answer (not streaming) before a request fails."""
TIMEOUT_VARIABLE = "MCP_FOUNDRY_LLM_TIMEOUT"

# Statuses worth another try: rate limits, timeouts at a proxy, and server-side failures.
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class RetryEvent(BaseModel):
    """One retry the provider made, kept so reports and tests can see what happened."""

    attempt: int
    reason: str
    delay_s: float


class _Reply(BaseModel):
    """One answer, streamed or not, reduced to what a Completion needs."""

    text: str
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class OpenAIProvider:
    """Chat completions over the `openai` package: streamed, with our own bounded retries and schema fallback."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        price_in_per_1k: float = 0.0,
        price_out_per_1k: float = 0.0,
    ):
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.price_in_per_1k = price_in_per_1k
        self.price_out_per_1k = price_out_per_1k
        self.supports_response_format: bool | None = None
        """None until learned; False once the endpoint rejected response_format (then JSON is extracted)."""
        self.supports_stream: bool | None = None
        """None until learned; False once the endpoint refused to stream or answered a streamed request whole."""
        self.retry_log: list[RetryEvent] = []
        """Every retry this provider made, oldest first."""
        # Local servers (Ollama, vLLM, llama.cpp) ignore the key, but the client insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            # Per read of the socket: between two streamed pieces, or for a whole unstreamed answer.
            timeout=openai.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
            max_retries=0,  # our loop below retries, so the attempts are visible and bounded in one place
        )

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """Return the model's reply; JSON text (extracted if need be) when a schema is given."""
        wire = [m.model_dump() for m in messages]
        kwargs: dict[str, Any] = {"model": self.model, "messages": wire, "temperature": temperature}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        rejected = False
        if json_schema is not None and self.supports_response_format is not False:
            try:
                resp = await self._create_with_retries(
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": _schema_name(schema_name), "schema": json_schema},
                    },
                    **kwargs,
                )
                self.supports_response_format = True
                return self._completion(resp, json_schema)
            except openai.APIStatusError as e:
                # 400/422 with response_format set: probably no structured output here; try without it.
                if e.status_code not in (400, 422):
                    raise self._error(e) from e
                rejected = True
        if json_schema is not None:
            kwargs["messages"] = _with_instruction(wire, schema_instruction(json_schema, schema_name))
        try:
            resp = await self._create_with_retries(**kwargs)
        except openai.APIStatusError as e:
            raise self._error(e) from e
        if rejected:
            # Only now is it clear that response_format (not the request as a whole) was the problem.
            self.supports_response_format = False
        return self._completion(resp, json_schema)

    async def _create_with_retries(self, **kwargs: Any) -> _Reply:
        """Call the endpoint, retrying 429/5xx/connection errors with backoff; raise LLMError when exhausted.

        A timeout is not retried: the endpoint answered the connection, so asking again would only
        wait as long again.
        """
        attempt = 0
        while True:
            try:
                return await self._once(**kwargs)
            except openai.APITimeoutError as e:
                raise LLMError(
                    f"LLM endpoint {self._where()} sent no answer within {self.timeout_s:g} s for model "
                    f"{self.model!r} ({TIMEOUT_VARIABLE}); a slow model needs a longer {TIMEOUT_VARIABLE}, or an "
                    "endpoint that streams, so that only a stall ends the request"
                ) from e
            except openai.APIStatusError as e:
                if e.status_code not in _RETRYABLE or attempt >= self.max_retries:
                    if e.status_code in _RETRYABLE:
                        raise self._error(e, attempts=attempt + 1) from e
                    raise
                hinted = _retry_after(e.response.headers)
                delay = self._backoff(attempt) if hinted is None else hinted
                reason = f"HTTP {e.status_code}"
            except openai.APIConnectionError as e:
                if attempt >= self.max_retries:
                    raise LLMError(
                        f"LLM endpoint {self._where()} unreachable after {attempt + 1} attempt(s): {str(e).rstrip('.')}. "
                        "Check MCP_FOUNDRY_LLM_BASE_URL and that the server is running."
                    ) from e
                delay = self._backoff(attempt)
                reason = type(e).__name__
            except openai.APIError as e:  # an error event inside a stream: the endpoint gave up on this request
                raise LLMError(f"LLM endpoint {self._where()} reported an error while answering for model "
                               f"{self.model!r}: {e.message}") from e
            attempt += 1
            delay = min(delay, self.backoff_max_s)
            self.retry_log.append(RetryEvent(attempt=attempt, reason=reason, delay_s=delay))
            await anyio.sleep(delay)

    async def _once(self, **kwargs: Any) -> _Reply:
        """One request: streamed unless the endpoint is known not to stream."""
        create = self._client.chat.completions.create
        if self.supports_stream is False:
            return self._whole(await create(**kwargs))
        try:
            stream = await create(stream=True, stream_options={"include_usage": True}, **kwargs)
        except openai.APIStatusError as e:
            # Only a refusal that speaks of streaming is taken as "cannot stream"; any other 400 is the request's.
            if e.status_code not in (400, 422) or "stream" not in str(e.message).lower():
                raise
            self.supports_stream = False
            return self._whole(await create(**kwargs))
        try:
            return await self._consume(stream)
        finally:
            await stream.close()

    async def _consume(self, stream: Any) -> _Reply:
        """Read a streamed answer piece by piece; LLMError when no piece comes for `timeout_s`."""
        if "text/event-stream" not in stream.response.headers.get("content-type", ""):
            # The endpoint ignored `stream` and answered whole: take that answer, and stop asking to stream.
            self.supports_stream = False
            body = await stream.response.aread()
            try:
                return self._whole(ChatCompletion.model_validate(json.loads(body)))
            except ValueError as e:  # not JSON, or not a chat completion (pydantic's error is a ValueError)
                raise LLMError(f"LLM endpoint {self._where()} answered with neither a stream nor a chat "
                               f"completion: {body[:200]!r}") from e
        t0 = time.monotonic()
        parts: list[str] = []
        pieces, chars, model, usage = 0, 0, "", None
        chunks = stream.__aiter__()
        while (chunk := await self._next_chunk(chunks, t0, pieces)) is not None:
            model = getattr(chunk, "model", None) or model
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                delta = choice.delta
                text = getattr(delta, "content", None) or ""
                # Thinking models stream their reasoning first: it is not the reply, but it is progress.
                thought = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None) or ""
                if text or thought:
                    pieces += 1
                    parts.append(text)
                    chars += len(text)
                    report(StreamProgress(tokens=pieces, chars=chars, seconds=round(time.monotonic() - t0, 3)))
        self.supports_stream = True
        return _Reply(
            text="".join(parts),
            model=model or self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            # Without a usage record (an endpoint that ignores stream_options) the pieces are the best count there is.
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else pieces,
        )

    async def _next_chunk(self, chunks: AsyncIterator[Any], t0: float, received: int) -> Any:
        """The stream's next chunk (None at its end); LLMError when it takes longer than `timeout_s` to come."""
        stalled = True
        with anyio.move_on_after(self.timeout_s):
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return None
            except openai.APITimeoutError:
                pass  # the socket read timed out first: the same stall, told the same way
            else:
                stalled = False
        if stalled:
            raise LLMError(
                f"LLM endpoint {self._where()} stalled: no token for {self.timeout_s:g} s after {received} "
                f"token(s) in {time.monotonic() - t0:.0f} s (model {self.model!r}). If the model is merely slow, "
                f"raise {TIMEOUT_VARIABLE} (now {self.timeout_s:g} s)."
            )
        return chunk

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with a little jitter so parallel builds do not retry in lockstep."""
        return self.backoff_base_s * (2**attempt) * (1 + random.random() * 0.1)

    def _completion(self, reply: _Reply, json_schema: dict[str, Any] | None) -> Completion:
        """Turn a reply into a Completion, pricing it and extracting JSON when asked for."""
        text = reply.text
        if json_schema is not None:
            text = extract_json_text(text) or text
        p_in, p_out = reply.prompt_tokens, reply.completion_tokens
        priced = self.price_in_per_1k or self.price_out_per_1k
        cost = p_in / 1000 * self.price_in_per_1k + p_out / 1000 * self.price_out_per_1k if priced else None
        return Completion(
            text=text,
            model=reply.model or self.model,
            prompt_tokens=p_in,
            completion_tokens=p_out,
            cost_usd=cost,
        )

    def _whole(self, resp: Any) -> _Reply:
        """A reply from an unstreamed ChatCompletion."""
        if not getattr(resp, "choices", None):
            raise LLMError(f"LLM endpoint {self._where()} returned no choices for model {self.model!r}")
        usage = getattr(resp, "usage", None)
        return _Reply(
            text=resp.choices[0].message.content or "",
            model=resp.model or self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    def _where(self) -> str:
        return self.base_url or "(default OpenAI URL)"

    def _error(self, e: openai.APIStatusError, attempts: int = 1) -> LLMError:
        return LLMError(
            f"LLM endpoint {self._where()} answered HTTP {e.status_code} for model {self.model!r} "
            f"after {attempts} attempt(s): {e.message}"
        )


def _schema_name(name: str) -> str:
    """OpenAI accepts only [a-zA-Z0-9_-]{1,64} as a schema name."""
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:64]
    return cleaned or "response"


def _with_instruction(wire: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """Append the JSON instruction to the system message, adding one if there is none."""
    out = [dict(m) for m in wire]
    for m in out:
        if m["role"] == "system":
            m["content"] = f"{m['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
