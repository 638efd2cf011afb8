"""Safe arithmetic: evaluate math expressions with an AST walker (no eval), plus basic statistics."""

import ast
import math
import operator
import statistics
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("safe-calculator", instructions="Evaluate arithmetic safely; no Python code is ever executed.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log,
             "log10": math.log10, "exp": math.exp, "abs": abs, "round": round, "floor": math.floor,
             "ceil": math.ceil, "factorial": math.factorial, "min": min, "max": max}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 10_000
MAX_LENGTH = 500


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        return BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and (args[0] > 1000 or args[0] != int(args[0])):
            raise ToolError("factorial takes a whole number up to 1000")
        return FUNCTIONS[node.func.id](*args)
    allowed = "numbers, + - * / // % **, parentheses, " + ", ".join(sorted(FUNCTIONS)) + ", " + ", ".join(CONSTANTS)
    raise ToolError(f"unsupported element {ast.dump(node)[:60]!r}; allowed: {allowed}")


@mcp.tool(annotations=READ_ONLY)
def evaluate(expression: Annotated[str, Field(description="e.g. '2 * (3 + 4) ** 2' or 'sqrt(2) * pi'")]) -> float:
    """Evaluate an arithmetic expression safely (numbers, operators, common math functions)."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression is {len(expression)} characters; the limit is {MAX_LENGTH}")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"expression is not valid arithmetic: {exc.msg} at column {exc.offset}") from None
    try:
        result = _eval(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise ToolError(f"cannot evaluate: {exc}") from None
    return float(result)


@mcp.tool(annotations=READ_ONLY)
def describe_numbers(numbers: Annotated[list[float], Field(description="at least one number", max_length=10000)]) -> dict:
    """Count, sum, mean, median, min, max and (for 2+ values) standard deviation of a list of numbers."""
    if not numbers:
        raise ToolError("numbers is empty; pass at least one number")
    out = {"count": len(numbers), "sum": math.fsum(numbers), "mean": statistics.fmean(numbers),
           "median": statistics.median(numbers), "min": min(numbers), "max": max(numbers)}
    if len(numbers) > 1:
        out["stdev"] = statistics.stdev(numbers)
    return out


if __name__ == "__main__":
    mcp.run()
