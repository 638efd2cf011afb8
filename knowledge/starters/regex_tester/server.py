"""Regex tester: find matches with groups and positions, substitute, and split text with regular expressions."""

import re
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("regex-tester", instructions="Test Python regular expressions against sample text.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
MAX_TEXT = 100_000
MAX_MATCHES = 500


def _compile(pattern: str, flags: str) -> re.Pattern:
    bad = set(flags) - set(FLAGS)
    if bad:
        raise ToolError(f"flags {''.join(sorted(bad))!r} unknown; accepted letters: i (ignore case), m (multiline), "
                        "s (dot matches newline), x (verbose)")
    try:
        return re.compile(pattern, sum((FLAGS[f] for f in set(flags)), 0))
    except re.error as exc:
        raise ToolError(f"pattern is not a valid regular expression: {exc}") from None


def _text(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise ToolError(f"text has {len(text)} characters; the limit is {MAX_TEXT}")
    return text


@mcp.tool(annotations=READ_ONLY)
def test_regex(
    pattern: Annotated[str, Field(description="Python regular expression")],
    text: Annotated[str, Field(description="text to search")],
    flags: Annotated[str, Field(description="letters among i, m, s, x")] = "",
) -> dict:
    """Every match of a pattern in a text with its span, numbered groups and named groups."""
    regex = _compile(pattern, flags)
    matches = []
    for m in regex.finditer(_text(text)):
        matches.append({"match": m.group(0), "start": m.start(), "end": m.end(),
                        "groups": list(m.groups()), "named": m.groupdict()})
        if len(matches) >= MAX_MATCHES:
            break
    return {"count": len(matches), "matches": matches, "full_match": bool(regex.fullmatch(text))}


@mcp.tool(annotations=READ_ONLY)
def regex_replace(
    pattern: Annotated[str, Field(description="Python regular expression")],
    replacement: Annotated[str, Field(description="replacement; \\1 or \\g<name> refer to groups")],
    text: Annotated[str, Field(description="text to change")],
    flags: Annotated[str, Field(description="letters among i, m, s, x")] = "",
    count: Annotated[int, Field(description="max replacements, 0 for all", ge=0)] = 0,
) -> dict:
    """Replace matches of a pattern in a text; returns the new text and how many replacements were made."""
    try:
        result, n = _compile(pattern, flags).subn(replacement, _text(text), count=count)
    except (re.error, IndexError) as exc:
        raise ToolError(f"replacement refers to a missing group: {exc}") from None
    return {"text": result, "replacements": n}


@mcp.tool(annotations=READ_ONLY)
def regex_split(
    pattern: Annotated[str, Field(description="separator regular expression")],
    text: Annotated[str, Field(description="text to split")],
) -> list[str]:
    """Split a text on a pattern (at most 500 parts)."""
    return _compile(pattern, "").split(_text(text))[:MAX_MATCHES]


if __name__ == "__main__":
    mcp.run()
