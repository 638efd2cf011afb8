"""Turn starters (or any server folder) into success cases: tool info read from server.py by AST, no execution."""

from __future__ import annotations

import ast
import json
from typing import Any

from knowledge.models import SuccessCase, ToolInfo, ValidationSummary
from knowledge.starters import Starter, list_starters

_JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _param_schema(annotation: ast.AST | None) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if annotation is None:
        return schema
    # Annotated[T, Field(description=...)]
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
        elts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        schema = _param_schema(elts[0])
        for extra in elts[1:]:
            if isinstance(extra, ast.Call):
                for kw in extra.keywords:
                    if kw.arg == "description" and isinstance(_literal(kw.value), str):
                        schema["description"] = _literal(kw.value)
        return schema
    base = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    name = getattr(base, "id", None)
    if name in _JSON_TYPES:
        schema["type"] = _JSON_TYPES[name]
    return schema


def _annotation_values(tree: ast.Module) -> dict[str, dict[str, Any]]:
    """Module-level NAME = ToolAnnotations(...) assignments, as keyword dicts."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            if getattr(node.value.func, "id", "") == "ToolAnnotations" and isinstance(
                node.targets[0], ast.Name
            ):
                out[node.targets[0].id] = {kw.arg: _literal(kw.value) for kw in node.value.keywords if kw.arg}
    return out


def tools_from_source(source: str) -> list[ToolInfo]:
    """The tools an MCPServer module declares with @<server>.tool(...), read statically."""
    tree = ast.parse(source)
    named_annotations = _annotation_values(tree)
    tools = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            func = call.func if call else deco
            if not (isinstance(func, ast.Attribute) and func.attr == "tool"):
                continue
            kwargs = {kw.arg: kw.value for kw in call.keywords} if call else {}
            name = _literal(kwargs["name"]) if "name" in kwargs else node.name
            annotations: dict[str, Any] = {}
            if isinstance(kwargs.get("annotations"), ast.Name):
                annotations = named_annotations.get(kwargs["annotations"].id, {})
            args = node.args.args
            defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
            props, required = {}, []
            for arg, default in zip(args, defaults, strict=True):
                props[arg.arg] = _param_schema(arg.annotation)
                if default is None:
                    required.append(arg.arg)
            tools.append(
                ToolInfo(
                    name=name,
                    description=(ast.get_docstring(node) or "").strip(),
                    input_schema={"type": "object", "properties": props, "required": required},
                    output_schema=_param_schema(node.returns) or None,
                    annotations=annotations,
                )
            )
    return tools


def starter_case(starter: Starter) -> SuccessCase:
    """A success case for a starter, with its files, tools, dependencies and case count."""
    files = {
        p.name: p.read_text()
        for p in sorted(starter.directory.iterdir())
        if p.is_file() and p.suffix in {".py", ".txt", ".json"}
    }
    server_py = files["server.py"]
    module_doc = ast.get_docstring(ast.parse(server_py)) or ""
    n_cases = len(json.loads(files["cases.json"])["cases"])
    return SuccessCase(
        request_text=starter.description,
        server_name=starter.server_name,
        summary=module_doc.splitlines()[0] if module_doc else starter.description,
        category=starter.category,
        tags=list(starter.tags),
        tools=tools_from_source(server_py),
        dependencies=list(starter.requirements),
        files=files,
        deployed_dir=str(starter.directory),
        validation_summary=ValidationSummary(passed=n_cases, total=n_cases, detail="starter cases"),
        verdict="passed",
        source="starter",
    )


def seed_starters(store: Any, starters: list[Starter] | None = None) -> list[str]:
    """Store every starter in a KnowledgeStore (idempotent: re-seeding updates, never duplicates); returns ids."""
    return store.add_cases([starter_case(s) for s in (starters if starters is not None else list_starters())])
