"""Prompt templates as data files: each names the variables it expects on its first line.

Format: a first line `variables: a, b, c`, a line `---`, then the body with `$a`-style
placeholders (string.Template, so JSON braces in the text need no escaping).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from builder.errors import BuildError

_DIR = Path(__file__).parent


@cache
def _load(name: str) -> tuple[frozenset[str], Template]:
    path = _DIR / f"{name}.md"
    if not path.is_file():
        raise BuildError(f"prompt template {name!r} not found in {_DIR}")
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    if not sep or not head.startswith("variables:"):
        raise BuildError(f"prompt template {path} must start with 'variables: ...' and a '---' line")
    names = frozenset(v.strip() for v in head.removeprefix("variables:").split(",") if v.strip())
    return names, Template(body)


def render(name: str, **values: object) -> str:
    """Fill template `name` with exactly the variables it declares (BuildError on a mismatch)."""
    names, template = _load(name)
    given = set(values)
    if given != names:
        raise BuildError(f"prompt {name!r} expects variables {sorted(names)}, got {sorted(given)}")
    return template.substitute({k: str(v) for k, v in values.items()})


def variables(name: str) -> frozenset[str]:
    """The variables a template declares."""
    return _load(name)[0]
