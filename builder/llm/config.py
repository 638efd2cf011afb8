"""LLM configuration: one typed model, filled from env vars, turned into a provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from builder.errors import InputError, NotConfigured
from builder.llm.base import LLMProvider

ENV_PROVIDER = "MCP_FOUNDRY_LLM_PROVIDER"
ENV_BASE_URL = "MCP_FOUNDRY_LLM_BASE_URL"
ENV_API_KEY = "MCP_FOUNDRY_LLM_API_KEY"
ENV_MODEL = "MCP_FOUNDRY_LLM_MODEL"
ENV_CASSETTE = "MCP_FOUNDRY_LLM_CASSETTE"
ENV_TIMEOUT = "MCP_FOUNDRY_LLM_TIMEOUT"
MAX_TIMEOUT_S = 86400.0

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
"""Used only for the default OpenAI URL; any other base URL must name its model."""

HOW_TO_CONFIGURE = f"""No LLM provider is configured. Configure one of:
  - an OpenAI-compatible endpoint:
      {ENV_BASE_URL}=http://127.0.0.1:11434/v1   (Ollama; vLLM: http://127.0.0.1:8000/v1)
      {ENV_MODEL}=qwen2.5-coder:7b
      {ENV_API_KEY}=...   (or OPENAI_API_KEY; local servers need none)
  - OpenAI itself: OPENAI_API_KEY=sk-... (model defaults to {DEFAULT_OPENAI_MODEL}, override with {ENV_MODEL})
  - recorded exchanges: {ENV_PROVIDER}=replay and {ENV_CASSETTE}=/path/to/cassette.jsonl"""


class LLMConfig(BaseModel):
    """Which LLM to use and how; `provider=None` means infer from what is set."""

    provider: Literal["openai", "replay", "none"] | None = None
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)
    model: str | None = None
    cassette: Path | None = None
    """Replay reads it; with provider "openai" every exchange is also recorded to it."""
    timeout_s: float = Field(600.0, gt=0, le=MAX_TIMEOUT_S)
    """Seconds without a streamed token (or, from an endpoint that does not stream, without the answer)."""
    max_retries: int = Field(3, ge=0, le=10)
    backoff_base_s: float = Field(1.0, ge=0)
    price_in_per_1k: float = Field(0.0, ge=0)
    price_out_per_1k: float = Field(0.0, ge=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> LLMConfig:
        """Build a config from MCP_FOUNDRY_LLM_* env vars (API key falls back to OPENAI_API_KEY)."""
        env = os.environ if env is None else env
        provider = (env.get(ENV_PROVIDER) or "").strip().lower() or None
        if provider is not None and provider not in ("openai", "replay", "none"):
            raise InputError(ENV_PROVIDER, f"unknown provider {provider!r}", '"openai", "replay" or "none"')
        values: dict[str, object] = {
            "provider": provider,
            "base_url": env.get(ENV_BASE_URL) or None,
            "api_key": env.get(ENV_API_KEY) or env.get("OPENAI_API_KEY") or None,
            "model": env.get(ENV_MODEL) or None,
            "cassette": env.get(ENV_CASSETTE) or None,
        }
        if env.get(ENV_TIMEOUT):
            values["timeout_s"] = _timeout(env[ENV_TIMEOUT])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


    def for_job(self) -> dict[str, object] | None:
        """What a front end records in a build's params: its model settings without the key (None: no model).

        The worker that runs the build may have been started by another front end, with
        another environment: the model the requester configured must win. A secret never
        goes into the job store; only whether one was set, so the worker can say what is
        missing when its own environment lacks the key.
        """
        kind = self.provider or ("openai" if (self.base_url or self.api_key) else "replay" if self.cassette
                                 else "none")
        if kind == "none":
            return None
        out = self.model_dump(mode="json", exclude={"api_key"}, exclude_defaults=True)
        out["provider"] = kind
        out["api_key_set"] = bool(self.api_key)
        return out

    @classmethod
    def from_job(cls, recorded: Mapping[str, object], env: Mapping[str, str] | None = None) -> LLMConfig:
        """The model settings a build's params recorded, with the API key from this process's environment.

        Raises NotConfigured when the requester had a key and this worker's environment has none.
        """
        env = os.environ if env is None else env
        values = {k: v for k, v in recorded.items() if k != "api_key_set"}
        key = env.get(ENV_API_KEY) or env.get("OPENAI_API_KEY") or None
        if recorded.get("api_key_set") and not key:
            raise NotConfigured(
                f"the build was requested with an LLM API key ({ENV_API_KEY} or OPENAI_API_KEY), but the worker "
                f"running it (pid {os.getpid()}) was started without one; keys never travel through the job store. "
                "Stop that worker (`mcp-foundry doctor` shows its pid; it also exits when idle) so that the next "
                "request starts one from your environment, or give the key to the workers' environment")
        return cls.model_validate({**values, "api_key": key})


def _timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_S:  # NaN fails this too
        raise InputError(ENV_TIMEOUT, f"{raw!r} is not a number of seconds in range",
                         f"seconds without a token before a model request fails: more than 0, at most "
                         f"{MAX_TIMEOUT_S:g} (default 600)")
    return value


def make_provider(config: LLMConfig | None = None) -> LLMProvider | None:
    """The provider `config` describes (env when None), or None when nothing is configured."""
    from builder.llm.openai_compat import OpenAIProvider
    from builder.llm.replay import RecordingProvider, ReplayProvider

    cfg = LLMConfig.from_env() if config is None else config
    kind = cfg.provider
    if kind is None:
        kind = "openai" if (cfg.base_url or cfg.api_key) else "replay" if cfg.cassette else "none"
    if kind == "none":
        return None
    if kind == "replay":
        if cfg.cassette is None:
            raise InputError(
                ENV_CASSETTE, "provider 'replay' needs a cassette path", "a path to a .jsonl cassette"
            )
        return ReplayProvider(cfg.cassette)
    model = cfg.model or (DEFAULT_OPENAI_MODEL if cfg.base_url is None else None)
    if model is None:
        raise InputError(
            ENV_MODEL,
            f"no model named for base URL {cfg.base_url}",
            "the model name the endpoint serves, e.g. qwen2.5-coder:7b for Ollama",
        )
    if cfg.base_url is None and cfg.api_key is None:
        raise InputError(ENV_API_KEY, "provider 'openai' without a base URL needs an API key", "an API key")
    provider: LLMProvider = OpenAIProvider(
        model=model,
        base_url=cfg.base_url,
        api_key=cfg.api_key,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        backoff_base_s=cfg.backoff_base_s,
        price_in_per_1k=cfg.price_in_per_1k,
        price_out_per_1k=cfg.price_out_per_1k,
    )
    if cfg.cassette is not None:
        provider = RecordingProvider(provider, cfg.cassette)
    return provider


def require_provider(config: LLMConfig | None = None) -> LLMProvider:
    """Like make_provider, but raise NotConfigured (saying how to configure one) instead of returning None."""
    provider = make_provider(config)
    if provider is None:
        raise NotConfigured(HOW_TO_CONFIGURE)
    return provider
