"""Pull a JSON object out of free-form model text (for endpoints without structured output)."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


def extract_json_text(text: str) -> str | None:
    """Return the first complete JSON object found in `text` (fenced blocks first), or None."""
    for block in _FENCE.findall(text):
        found = _first_object(block)
        if found is not None:
            return found
    return _first_object(text)


def _first_object(text: str) -> str | None:
    """Scan for the first '{' that starts a decodable JSON object; models often wrap JSON in prose."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return text[start:end]
        start = text.find("{", start + 1)
    return None


def schema_instruction(json_schema: dict[str, Any], schema_name: str) -> str:
    """The prompt suffix that asks for JSON where the endpoint cannot enforce a schema."""
    return (
        f"Reply with a single JSON object named {schema_name!r} that validates against this JSON schema, "
        "and nothing else (no prose, no code fences):\n"
        + json.dumps(json_schema, indent=None, sort_keys=True)
    )
