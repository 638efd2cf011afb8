"""JSON query: pick values out of a JSON document with a small path language, and list its paths.

Path language: `$` is the root; `.key` or `["key"]` selects a member; `[3]` / `[-1]` an array
element; `[*]` or `.*` every element/member; `..key` every `key` at any depth;
`[?key==value]` keeps array elements whose `key` equals the JSON `value`.
"""

import json
import re
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("json-query", instructions="Query JSON documents with paths like $.items[*].name or $..id.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_DOC = 2_000_000
MAX_RESULTS = 1000
TOKEN = re.compile(
    r"""\.\.(?P<deep>[A-Za-z_][\w-]*)|\.(?P<key>[A-Za-z_][\w-]*)|\.\*(?P<star1>)|\[\*\](?P<star2>)|\[(?P<idx>-?\d+)\]"""
    r"""|\[\s*["'](?P<qkey>[^"']*)["']\s*\]|\[\?\s*(?P<fkey>[\w-]+)\s*==\s*(?P<fval>[^\]]+)\]"""
)


def _parse(path: str) -> list[tuple[str, Any]]:
    if not path.startswith("$"):
        raise ToolError(f"path {path!r} must start with '$' (the document root), e.g. '$.items[0].name'")
    steps, pos = [], 1
    while pos < len(path):
        m = TOKEN.match(path, pos)
        if not m:
            raise ToolError(f"path {path!r} is invalid at position {pos} ({path[pos:pos + 10]!r}); see the tool description")
        kind = next(k for k, v in m.groupdict().items() if v is not None and k != "fval")
        value = m.group(kind)
        if kind == "fkey":
            try:
                value = (value, json.loads(m.group("fval")))
            except ValueError:
                raise ToolError(f"filter value {m.group('fval')!r} must be JSON, e.g. 3, \"x\" or true") from None
        steps.append((kind, value))
        pos = m.end()
    return steps


def _descend(node: Any, key: str) -> list[Any]:
    found = []
    if isinstance(node, dict):
        if key in node:
            found.append(node[key])
        for child in node.values():
            found += _descend(child, key)
    elif isinstance(node, list):
        for child in node:
            found += _descend(child, key)
    return found


def _step(nodes: list[Any], kind: str, value: Any) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        if kind in ("key", "qkey") and isinstance(node, dict) and value in node:
            out.append(node[value])
        elif kind == "idx" and isinstance(node, list) and -len(node) <= int(value) < len(node):
            out.append(node[int(value)])
        elif kind in ("star1", "star2"):
            out += list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        elif kind == "deep":
            out += _descend(node, value)
        elif kind == "fkey" and isinstance(node, list):
            out += [el for el in node if isinstance(el, dict) and el.get(value[0]) == value[1]]
    return out


def _load(document: str) -> Any:
    if len(document) > MAX_DOC:
        raise ToolError(f"document has {len(document)} characters; the limit is {MAX_DOC}")
    try:
        return json.loads(document)
    except ValueError as exc:
        raise ToolError(f"document is not valid JSON: {exc}") from None


@mcp.tool(annotations=READ_ONLY)
def query_json(
    document: Annotated[str, Field(description="the JSON document as text")],
    path: Annotated[str, Field(description="e.g. '$.store.books[*].title', '$..id', '$.items[?type==\"a\"]'")],
) -> list[Any]:
    """All values in a JSON document that a path selects (at most 1000), in document order."""
    nodes = [_load(document)]
    for kind, value in _parse(path):
        nodes = _step(nodes, kind, value)
    return nodes[:MAX_RESULTS]


@mcp.tool(annotations=READ_ONLY)
def list_json_paths(document: Annotated[str, Field(description="the JSON document as text")]) -> list[str]:
    """Every leaf path of a JSON document (at most 1000), to help write queries."""
    paths: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if len(paths) >= MAX_RESULTS:
            return
        if isinstance(node, dict) and node:
            for key, child in node.items():
                walk(child, f"{prefix}.{key}" if re.fullmatch(r"[A-Za-z_][\w-]*", key) else f"{prefix}[{json.dumps(key)}]")
        elif isinstance(node, list) and node:
            for i, child in enumerate(node):
                walk(child, f"{prefix}[{i}]")
        else:
            paths.append(prefix)

    walk(_load(document), "$")
    return paths


if __name__ == "__main__":
    mcp.run()
