"""Repository patterns for the code writer: stored servers cut to a budget at statement boundaries, never mid-body.

A pattern cut in the middle of a function teaches the model a broken function. So a server's
source is split into its top-level statements (with their decorators and the comments above
them) and whole statements are kept: imports and the `if __name__ == "__main__"` block always,
then module-level lines, the functions registered as tools, resources or prompts, and the
helpers, each group in source order, while the budget lasts. What does not fit is named in a
one-line comment, so the reader knows it exists.
"""

from __future__ import annotations

import ast

_ALWAYS = (ast.Import, ast.ImportFrom)


def excerpt(source: str, budget: int) -> str:
    """`source` in at most about `budget` characters, made of whole top-level statements in source order."""
    if len(source) <= budget:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _whole_lines(source, budget)
    pieces = _pieces(tree, source.splitlines(keepends=True))
    notes = [_note(node, text) for node, text in pieces]
    keep: set[int] = set()
    size = sum(len(n) for n in notes)  # everything omitted; each kept piece replaces its note
    for i in sorted(range(len(pieces)), key=lambda i: (_rank(pieces[i][0]), i)):
        node, text = pieces[i]
        grows = len(text) - len(notes[i])
        if _rank(node) == 0 or size + grows <= budget:
            keep.add(i)
            size += grows
    return "".join(text if i in keep else notes[i] for i, (_, text) in enumerate(pieces))


def _pieces(tree: ast.Module, lines: list[str]) -> list[tuple[ast.stmt, str]]:
    """Each top-level statement with the comments and blank lines above it and its decorators."""
    out = []
    start = 0
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        end = node.end_lineno or node.lineno
        out.append((node, "".join(lines[min(start, first):end])))
        start = end
    if out and start < len(lines):
        node, text = out[-1]
        out[-1] = (node, text + "".join(lines[start:]))
    return out


def _rank(node: ast.stmt) -> int:
    """0: always kept (imports, the entry point); then module-level lines, the server's tools, resources and
    prompts, and last the helpers."""
    if isinstance(node, _ALWAYS) or _is_main(node):
        return 0
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        registered = any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                         and d.func.attr in ("tool", "resource", "prompt") for d in node.decorator_list)
        return 2 if registered else 3
    return 3 if isinstance(node, ast.ClassDef) else 1


def _is_main(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def _note(node: ast.stmt, text: str) -> str:
    """The one line that stands for an omitted statement."""
    n = text.strip("\n").count("\n") + 1
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        what = f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"
    elif isinstance(node, ast.ClassDef):
        what = f"class {node.name}"
    else:
        what = ast.unparse(node).splitlines()[0][:80]
    return f"\n# (omitted here for length: {what}, {n} lines)\n"


def _whole_lines(source: str, budget: int) -> str:
    """Source that does not parse: whole lines up to the budget, and a note that the rest is cut."""
    out, used = [], 0
    for line in source.splitlines(keepends=True):
        if used + len(line) > budget:
            break
        out.append(line)
        used += len(line)
    return "".join(out) + "\n# (cut here for length)\n"
