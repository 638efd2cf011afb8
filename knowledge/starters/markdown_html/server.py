"""Markdown to HTML: render Markdown (tables, fenced code, TOC), list headings, and strip Markdown to plain text."""

import html
import re
from typing import Annotated

import markdown
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("markdown-html", instructions="Convert Markdown to HTML and inspect Markdown documents.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
EXTENSIONS = ["abbr", "def_list", "fenced_code", "footnotes", "sane_lists", "tables", "toc"]
MAX_CHARS = 1_000_000
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _check(text: str) -> str:
    if len(text) > MAX_CHARS:
        raise ToolError(f"markdown has {len(text)} characters; the limit is {MAX_CHARS}")
    return text


@mcp.tool(annotations=READ_ONLY)
def markdown_to_html(
    markdown_text: Annotated[str, Field(description="Markdown source")],
    extensions: Annotated[list[str], Field(description="subset of " + ", ".join(EXTENSIONS))] = ["fenced_code", "tables"],
    escape_html: Annotated[bool, Field(description="escape raw HTML in the input (safer)")] = True,
) -> str:
    """Render Markdown to an HTML fragment."""
    unknown = sorted(set(extensions) - set(EXTENSIONS))
    if unknown:
        raise ToolError(f"extensions {unknown} are not available; accepted: {EXTENSIONS}")
    source = _check(markdown_text)
    if escape_html:
        source = re.sub(r"<(?=[A-Za-z/!])", "&lt;", source)
    return markdown.markdown(source, extensions=extensions, output_format="html")


@mcp.tool(annotations=READ_ONLY)
def markdown_headings(markdown_text: Annotated[str, Field(description="Markdown source")]) -> list[dict]:
    """The document outline: every ATX heading (# ...) with its level, outside fenced code blocks."""
    out, fenced = [], False
    for line in _check(markdown_text).splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            out.append({"level": len(m.group(1)), "title": m.group(2)})
    return out[:1000]


@mcp.tool(annotations=READ_ONLY)
def markdown_to_text(markdown_text: Annotated[str, Field(description="Markdown source")]) -> str:
    """Plain text of a Markdown document (rendered, then tags removed)."""
    rendered = markdown.markdown(_check(markdown_text), extensions=["fenced_code", "tables"])
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


if __name__ == "__main__":
    mcp.run()
