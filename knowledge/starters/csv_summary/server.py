"""CSV summary: column types, missing values, numeric statistics and top values of CSV data."""

import csv
import io
import statistics
from collections import Counter
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("csv-summary", instructions="Summarize CSV data: shape, column types, statistics, top values.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_CHARS = 5_000_000
MAX_PREVIEW = 50


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "")) if text.strip() else None
    except ValueError:
        return None


def _read(csv_text: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    if not csv_text.strip():
        raise ToolError("csv_text is empty; pass CSV data with a header row")
    if len(csv_text) > MAX_CHARS:
        raise ToolError(f"csv_text has {len(csv_text)} characters; the limit is {MAX_CHARS}")
    if delimiter and len(delimiter) != 1:
        raise ToolError(f"delimiter must be one character (e.g. ',', ';', '\\t'), got {delimiter!r}")
    if not delimiter:
        try:
            delimiter = csv.Sniffer().sniff(csv_text[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(io.StringIO(csv_text), delimiter=delimiter))
    header, body = rows[0], [r for r in rows[1:] if any(cell.strip() for cell in r)]
    return header, body


@mcp.tool(annotations=READ_ONLY)
def summarize_csv(
    csv_text: Annotated[str, Field(description="CSV content with a header row")],
    delimiter: Annotated[str, Field(description="one character; '' to detect")] = "",
) -> dict:
    """Rows, columns and, per column: type, missing count, distinct count, numeric stats or top values."""
    header, body = _read(csv_text, delimiter)
    columns = []
    for i, name in enumerate(header):
        values = [row[i].strip() if i < len(row) else "" for row in body]
        present = [v for v in values if v]
        numbers = [n for n in (_number(v) for v in present) if n is not None]
        col = {"name": name, "missing": len(values) - len(present), "distinct": len(set(present))}
        if present and len(numbers) == len(present):
            col |= {"type": "number", "min": min(numbers), "max": max(numbers),
                    "mean": round(statistics.fmean(numbers), 6), "median": statistics.median(numbers)}
        else:
            col |= {"type": "text", "top_values": [[v, c] for v, c in Counter(present).most_common(5)]}
        columns.append(col)
    return {"rows": len(body), "columns": len(header), "column_summaries": columns}


@mcp.tool(annotations=READ_ONLY)
def preview_csv(
    csv_text: Annotated[str, Field(description="CSV content with a header row")],
    rows: Annotated[int, Field(description="rows to show", ge=1, le=MAX_PREVIEW)] = 5,
    delimiter: Annotated[str, Field(description="one character; '' to detect")] = "",
) -> list[dict]:
    """The first rows of CSV data as objects keyed by the header."""
    header, body = _read(csv_text, delimiter)
    return [dict(zip(header, row, strict=False)) for row in body[:rows]]


if __name__ == "__main__":
    mcp.run()
