"""Time zone tools: current time anywhere, conversion between zones, and zone lookup (IANA database)."""

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("timezones", instructions="Convert times between IANA time zones and tell the time anywhere.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_LIST = 200


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"{field} {name!r} is not an IANA time zone; use names like 'Europe/Paris', 'America/New_York' "
            "or 'UTC' (list_timezones shows them)"
        ) from None


@mcp.tool(annotations=READ_ONLY)
def current_time(timezone: Annotated[str, Field(description="IANA zone, e.g. 'Asia/Tokyo'")] = "UTC") -> dict:
    """The current date and time in a time zone, with its UTC offset."""
    now = datetime.now(_zone(timezone, "timezone"))
    return {"timezone": timezone, "datetime": now.isoformat(timespec="seconds"), "utc_offset": now.strftime("%z")}


@mcp.tool(annotations=READ_ONLY)
def convert_time(
    time: Annotated[str, Field(description="ISO 8601 date-time, e.g. '2024-03-10 14:30'")],
    from_timezone: Annotated[str, Field(description="zone the time is given in")],
    to_timezone: Annotated[str, Field(description="zone to convert to")],
) -> dict:
    """Convert a wall-clock date-time from one time zone to another (daylight saving handled)."""
    src, dst = _zone(from_timezone, "from_timezone"), _zone(to_timezone, "to_timezone")
    try:
        parsed = datetime.fromisoformat(time)
    except ValueError:
        raise ToolError(f"time {time!r} is not ISO 8601; use 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DDTHH:MM:SS'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=src)
    converted = parsed.astimezone(dst)
    return {
        "from": parsed.isoformat(timespec="minutes"),
        "to": converted.isoformat(timespec="minutes"),
        "to_timezone": to_timezone,
        "utc_offset": converted.strftime("%z"),
    }


@mcp.tool(annotations=READ_ONLY)
def list_timezones(contains: Annotated[str, Field(description="case-insensitive filter, e.g. 'america'")] = "") -> list[str]:
    """IANA time zone names containing a substring (at most 200)."""
    needle = contains.lower()
    names = sorted(z for z in available_timezones() if needle in z.lower())
    if not names:
        raise ToolError(f"no time zone contains {contains!r}; try a city or region such as 'Paris' or 'Asia'")
    return names[:MAX_LIST]


if __name__ == "__main__":
    mcp.run()
