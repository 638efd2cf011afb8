"""Text statistics: counts, reading time, readability and word frequencies of a text."""

import re
from collections import Counter
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("text-statistics", instructions="Measure texts: words, sentences, reading time, readability.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_CHARS = 1_000_000
WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
STOP = set("the a an and or of to in is it that this for on with as was are be by at from".split())


def _check(text: str) -> str:
    if not text.strip():
        raise ToolError("text is empty; pass the text to analyse")
    if len(text) > MAX_CHARS:
        raise ToolError(f"text has {len(text)} characters; the limit is {MAX_CHARS}")
    return text


def _syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    count = len(groups) - (1 if word.lower().endswith("e") and len(groups) > 1 else 0)
    return max(1, count)


@mcp.tool(annotations=READ_ONLY)
def text_statistics(text: Annotated[str, Field(description="the text to measure")]) -> dict:
    """Characters, words, sentences, paragraphs, average word length, reading time and Flesch reading ease."""
    words = WORD.findall(_check(text))
    sentences = max(1, len(SENTENCE_END.findall(text.strip() + (" " if text.strip()[-1:] not in ".!?" else ""))))
    syllables = sum(_syllables(w) for w in words)
    n = max(1, len(words))
    return {
        "characters": len(text),
        "characters_no_spaces": len(re.sub(r"\s", "", text)),
        "words": len(words),
        "sentences": sentences,
        "paragraphs": len([p for p in re.split(r"\n\s*\n", text) if p.strip()]),
        "average_word_length": round(sum(len(w) for w in words) / n, 2),
        "reading_time_seconds": round(len(words) / 238 * 60),
        "flesch_reading_ease": round(206.835 - 1.015 * (len(words) / sentences) - 84.6 * (syllables / n), 1),
    }


@mcp.tool(annotations=READ_ONLY)
def word_frequencies(
    text: Annotated[str, Field(description="the text to count words in")],
    top: Annotated[int, Field(description="how many words to return", ge=1, le=200)] = 10,
    skip_common: Annotated[bool, Field(description="ignore very common English words")] = True,
) -> list[dict]:
    """The most frequent words of a text with their counts, most frequent first."""
    words = [w.lower() for w in WORD.findall(_check(text))]
    counts = Counter(w for w in words if not (skip_common and w in STOP))
    return [{"word": w, "count": c} for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


if __name__ == "__main__":
    mcp.run()
