"""PDF text extraction: page text, document info and keyword search in PDFs given as base64."""

import base64
import binascii
import io
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from pypdf import PdfReader
from pypdf.errors import PdfReadError

mcp = MCPServer("pdf-text", instructions="Extract text from PDF documents passed as base64.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_BYTES = 20_000_000
MAX_CHARS = 200_000


def _reader(content_base64: str) -> PdfReader:
    try:
        data = base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError("content_base64 is not valid base64; encode the PDF file's bytes with base64") from None
    if len(data) > MAX_BYTES:
        raise ToolError(f"the PDF is {len(data)} bytes; the limit is {MAX_BYTES}")
    if not data.startswith(b"%PDF"):
        raise ToolError("content_base64 does not decode to a PDF (it must start with '%PDF')")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ToolError("the PDF is encrypted with a password; decrypt it first")
        return reader
    except PdfReadError as exc:
        raise ToolError(f"the PDF could not be read: {exc}") from None


def _pages(reader: PdfReader, pages: list[int]) -> list[int]:
    count = len(reader.pages)
    wanted = pages or list(range(1, count + 1))
    bad = [p for p in wanted if not 1 <= p <= count]
    if bad:
        raise ToolError(f"pages {bad} do not exist; the document has pages 1..{count}")
    return wanted


@mcp.tool(annotations=READ_ONLY)
def extract_pdf_text(
    content_base64: Annotated[str, Field(description="the PDF file's bytes, base64-encoded")],
    pages: Annotated[list[int], Field(description="1-based page numbers; empty for all")] = [],
) -> list[dict]:
    """The text of each requested page of a PDF (total output bounded to 200,000 characters)."""
    reader = _reader(content_base64)
    out, budget = [], MAX_CHARS
    for number in _pages(reader, pages):
        text = (reader.pages[number - 1].extract_text() or "")[:budget]
        budget -= len(text)
        out.append({"page": number, "text": text})
        if budget <= 0:
            break
    return out


@mcp.tool(annotations=READ_ONLY)
def pdf_info(content_base64: Annotated[str, Field(description="the PDF file's bytes, base64-encoded")]) -> dict:
    """Page count, title, author and other metadata of a PDF."""
    reader = _reader(content_base64)
    meta = reader.metadata or {}
    return {"pages": len(reader.pages), "title": meta.get("/Title"), "author": meta.get("/Author"),
            "producer": meta.get("/Producer"), "encrypted": reader.is_encrypted}


@mcp.tool(annotations=READ_ONLY)
def search_pdf(
    content_base64: Annotated[str, Field(description="the PDF file's bytes, base64-encoded")],
    query: Annotated[str, Field(description="text to look for (case-insensitive)", min_length=1)],
) -> list[dict]:
    """Pages of a PDF whose text contains a query, with a snippet around the first hit (at most 100 pages)."""
    reader = _reader(content_base64)
    hits = []
    for number, page in enumerate(reader.pages, 1):
        text = page.extract_text() or ""
        at = text.lower().find(query.lower())
        if at >= 0:
            hits.append({"page": number, "snippet": text[max(0, at - 60): at + len(query) + 60]})
            if len(hits) >= 100:
                break
    return hits


if __name__ == "__main__":
    mcp.run()
