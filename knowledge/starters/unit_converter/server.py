"""Unit conversion: length, mass, volume, speed, area, data size and temperature."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("unit-converter", instructions="Convert measurements between units of the same dimension.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

# Factor to the dimension's base unit (metre, kilogram, litre, metre/second, square metre, byte).
FACTORS: dict[str, dict[str, float]] = {
    "length": {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "yd": 0.9144,
               "mi": 1609.344, "nmi": 1852.0},
    "mass": {"mg": 1e-6, "g": 0.001, "kg": 1.0, "t": 1000.0, "oz": 0.028349523125, "lb": 0.45359237, "st": 6.35029318},
    "volume": {"ml": 0.001, "l": 1.0, "m3": 1000.0, "tsp": 0.00492892159375, "tbsp": 0.01478676478125,
               "cup": 0.2365882365, "floz": 0.0295735295625, "gal": 3.785411784},
    "speed": {"m/s": 1.0, "km/h": 1 / 3.6, "mph": 0.44704, "kn": 1852 / 3600},
    "area": {"m2": 1.0, "km2": 1e6, "ha": 1e4, "acre": 4046.8564224, "ft2": 0.09290304},
    "data": {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 1024, "mib": 1024**2, "gib": 1024**3},
}
TEMPERATURE = {"c", "f", "k"}
ALIASES = {"meter": "m", "metre": "m", "meters": "m", "kilometer": "km", "kilometers": "km", "mile": "mi",
           "miles": "mi", "foot": "ft", "feet": "ft", "inch": "in", "inches": "in", "kilogram": "kg", "kilograms": "kg",
           "gram": "g", "grams": "g", "pound": "lb", "pounds": "lb", "lbs": "lb", "ounce": "oz", "liter": "l",
           "litre": "l", "liters": "l", "gallon": "gal", "gallons": "gal", "celsius": "c", "fahrenheit": "f",
           "kelvin": "k", "kph": "km/h", "knots": "kn"}


def _canon(unit: str) -> str:
    u = unit.strip().lower().replace("°", "")
    return ALIASES.get(u, u)


def _dimension(unit: str, field: str) -> str:
    if unit in TEMPERATURE:
        return "temperature"
    for dim, table in FACTORS.items():
        if unit in table:
            return dim
    raise ToolError(f"{field} {unit!r} is not a known unit; list_units shows the accepted units per dimension")


def _to_kelvin(value: float, unit: str) -> float:
    return {"c": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15, "k": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"c": value - 273.15, "f": (value - 273.15) * 9 / 5 + 32, "k": value}[unit]


@mcp.tool(annotations=READ_ONLY)
def convert_units(
    value: Annotated[float, Field(description="the amount to convert")],
    from_unit: Annotated[str, Field(description="unit of value, e.g. 'mi', 'kg', 'c'")],
    to_unit: Annotated[str, Field(description="unit wanted, same dimension")],
) -> dict:
    """Convert a value between two units of the same dimension (e.g. miles to km, F to C)."""
    src, dst = _canon(from_unit), _canon(to_unit)
    dim_src, dim_dst = _dimension(src, "from_unit"), _dimension(dst, "to_unit")
    if dim_src != dim_dst:
        raise ToolError(f"cannot convert {dim_src} ({from_unit!r}) to {dim_dst} ({to_unit!r}): units must share a dimension")
    if dim_src == "temperature":
        if _to_kelvin(value, src) < 0:
            raise ToolError(f"{value} {from_unit} is below absolute zero")
        result = _from_kelvin(_to_kelvin(value, src), dst)
    else:
        result = value * FACTORS[dim_src][src] / FACTORS[dim_src][dst]
    return {"value": round(result, 10), "unit": dst, "dimension": dim_src}


@mcp.tool(annotations=READ_ONLY)
def list_units(dimension: Annotated[str, Field(description="one dimension, or '' for all")] = "") -> dict:
    """The units accepted for each dimension."""
    table = {dim: sorted(units) for dim, units in FACTORS.items()} | {"temperature": sorted(TEMPERATURE)}
    if dimension:
        if dimension not in table:
            raise ToolError(f"dimension {dimension!r} unknown; accepted: {sorted(table)}")
        return {dimension: table[dimension]}
    return table


if __name__ == "__main__":
    mcp.run()
