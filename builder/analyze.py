"""Analyse: the LLM turns a build request into a validated Requirement, re-asked when its output is malformed."""

from __future__ import annotations

import json
from typing import Any

from builder.llm.base import ChatMessage, LLMProvider, Usage
from builder.prompts import render
from builder.requirement import Requirement

MAX_ANALYSIS_ATTEMPTS = 3
"""How many times a malformed or invalid requirement is re-asked before the build fails."""


def request_text(params: dict[str, Any]) -> str:
    """The build request as one text: the description plus every explicit field the caller gave.

    The name is left out: it decides where the server is deployed, not what it does, so a
    repeat under another name is still an exact repeat (apply_overrides applies the name).
    """
    lines = [params["description"].strip()]
    for key in ("tools", "dependencies", "constraints", "examples"):
        value = params.get(key)
        if value:
            lines.append(f"{key}: {json.dumps(value, sort_keys=True)}")
    if params.get("needs_network"):
        lines.append("needs_network: true")
    return "\n".join(lines)


def analysis_messages(params: dict[str, Any]) -> list[ChatMessage]:
    """The chat that asks for a Requirement."""
    return [ChatMessage(role="system", content=render("analyze_system")),
            ChatMessage(role="user", content=render("analyze_user", request=request_text(params)))]


def apply_overrides(req: Requirement, params: dict[str, Any]) -> Requirement:
    """Fields the caller stated explicitly win over what the model inferred."""
    update: dict[str, Any] = {}
    if params.get("name"):
        update["server_name"] = params["name"]
    if params.get("needs_network"):
        update["needs_network"] = True
    for key in ("dependencies", "constraints"):
        extra = [v for v in params.get(key) or [] if v not in getattr(req, key)]
        if extra:
            update[key] = [*getattr(req, key), *extra]
    return Requirement.model_validate({**req.model_dump(), **update}) if update else req


def requirement_notes(req: Requirement, params: dict[str, Any]) -> list[str]:
    """Why parts of the requirement are what they are although the analysis may have proposed otherwise.

    The code writer (a model, or an agent that answered the analysis itself) is told, so a name it did
    not choose does not look like a mistake to correct.
    """
    notes = []
    if params.get("name"):
        notes.append(f"server_name is {req.server_name!r} because the build request named the server explicitly; "
                     "use exactly this name, even if the analysis proposed another.")
    if params.get("needs_network"):
        notes.append("needs_network is true because the build request allows the network.")
    given = [f"{key} {params[key]}" for key in ("dependencies", "constraints") if params.get(key)]
    if given:
        notes.append("These come from the build request itself and stay: " + "; ".join(given) + ".")
    return notes


async def analyze(provider: LLMProvider, params: dict[str, Any], usage: Usage) -> Requirement:
    """Ask the LLM for the Requirement of `params` (a build_params dict); LLMError after bounded re-asks."""
    from builder.llm import complete_json

    req = await complete_json(provider, analysis_messages(params), Requirement,
                              max_attempts=MAX_ANALYSIS_ATTEMPTS, usage=usage)
    return apply_overrides(req, params)
