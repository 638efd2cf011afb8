"""Date arithmetic: add or subtract periods, count days and business days between dates, describe a date."""

import calendar
from datetime import date, timedelta
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("date-math", instructions="Calendar arithmetic on ISO dates (YYYY-MM-DD).")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_SPAN_DAYS = 366 * 200


def _date(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ToolError(f"{field} {text!r} is not an ISO date; use YYYY-MM-DD, e.g. '2024-02-29'") from None


@mcp.tool(annotations=READ_ONLY)
def add_to_date(
    start: Annotated[str, Field(description="ISO date YYYY-MM-DD")],
    years: int = 0,
    months: int = 0,
    weeks: int = 0,
    days: int = 0,
) -> str:
    """Add (or subtract, with negative numbers) years, months, weeks and days to a date; month ends are clamped."""
    d = _date(start, "start")
    total_months = d.month - 1 + months + 12 * years
    year, month = d.year + total_months // 12, total_months % 12 + 1
    if not 1 <= year <= 9999:
        raise ToolError(f"result year {year} is outside 1..9999")
    d = date(year, month, min(d.day, calendar.monthrange(year, month)[1]))
    try:
        return (d + timedelta(weeks=weeks, days=days)).isoformat()
    except OverflowError:
        raise ToolError("result is outside the years 1..9999") from None


@mcp.tool(annotations=READ_ONLY)
def days_between(
    start: Annotated[str, Field(description="ISO date")],
    end: Annotated[str, Field(description="ISO date")],
) -> dict:
    """Calendar days, whole weeks and business days (Mon-Fri) from start to end (negative if end is earlier)."""
    a, b = _date(start, "start"), _date(end, "end")
    sign, lo, hi = (1, a, b) if a <= b else (-1, b, a)
    span = (hi - lo).days
    if span > MAX_SPAN_DAYS:
        raise ToolError(f"the dates are {span} days apart; the limit is {MAX_SPAN_DAYS}")
    full_weeks, rest = divmod(span, 7)
    business = full_weeks * 5 + sum(1 for i in range(rest) if (lo + timedelta(days=i)).weekday() < 5)
    return {"days": sign * span, "weeks": sign * full_weeks, "business_days": sign * business}


@mcp.tool(annotations=READ_ONLY)
def describe_date(day: Annotated[str, Field(description="ISO date")]) -> dict:
    """Weekday, ISO week number, day of year, quarter and whether the year is a leap year."""
    d = _date(day, "day")
    return {"weekday": calendar.day_name[d.weekday()], "iso_week": d.isocalendar().week,
            "day_of_year": d.timetuple().tm_yday, "quarter": (d.month - 1) // 3 + 1,
            "leap_year": calendar.isleap(d.year), "days_in_month": calendar.monthrange(d.year, d.month)[1]}


if __name__ == "__main__":
    mcp.run()
