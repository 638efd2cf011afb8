"""Test cases for a server under validation: the cases.json format, its loader, and how a result is judged.

Format (other parts of the project write it, so it stays exactly this):

    {"cases": [{"name": "optional", "tool": "add", "arguments": {"a": 1, "b": 2},
                "expect": {"equals": 3}}]}

`expect` holds exactly one of `equals` (any JSON value), `contains` (string), `matches`
(regex, searched), `schema` (a JSON schema the value must satisfy) or `error` (true: the
call must come back with isError; a string: isError and the message contains it). With
no `expect` the call just has to succeed.

A cases file is untrusted input (a server directory's own cases.json, a model's draft):
`matches` runs with the `regex` package's time limit, off the event loop; a `schema` is
checked in a worker process with a time limit (jsonschema evaluates its `pattern`s with
`re`, which holds the GIL); a schema that refers to itself without consuming the value
(`{"$ref": "#"}`) or reaches outside itself is refused when the file is read.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_process
import jsonschema
import regex
from pydantic import BaseModel, ConfigDict

from sandbox.errors import SandboxError
from sandbox.serverdir import ServerDirError, read_file

ExpectKind = Literal["equals", "contains", "matches", "schema", "error"]
EXPECT_KINDS: tuple[str, ...] = ("equals", "contains", "matches", "schema", "error")
CASE_FIELDS: tuple[str, ...] = ("name", "tool", "arguments", "expect")
MATCH_TIMEOUT_S = 1.0
"""Longest a `matches` expression may search one value; past it the case fails (catastrophic backtracking)."""
SCHEMA_TIMEOUT_S = 2.0
"""Longest a `schema` expectation may take to check one value (in a worker process, which is then ended)."""
MAX_PATTERN_CHARS = 2000
MAX_SCHEMA_CHARS = 100_000
_SAMPLES: tuple[Any, ...] = (None, True, 0, 1.5, "", "a", [], [None], {}, {"a": None})
"""Values a schema is tried on when read: one that recurses on any of them can never be checked."""


class CasesError(SandboxError):
    """A cases file (or cases given as data) is malformed; the message names the case index and field."""


class Expect(BaseModel):
    """What a case expects; exactly one field is set (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    equals: Any = None
    contains: str | None = None
    matches: str | None = None
    schema_: dict[str, Any] | None = None
    error: bool | str | None = None

    @property
    def kind(self) -> ExpectKind:
        """Which of the five expectations this is."""
        for kind in EXPECT_KINDS:
            if (kind if kind != "schema" else "schema_") in self.model_fields_set:
                return kind  # type: ignore[return-value]
        raise CasesError("expect: no expectation set; give exactly one of " + ", ".join(EXPECT_KINDS))

    def as_json(self) -> dict[str, Any]:
        """The expectation back in its cases.json form, e.g. {"equals": 3}."""
        kind = self.kind
        return {kind: getattr(self, "schema_" if kind == "schema" else kind)}


class Case(BaseModel):
    """One tool call and what it should return."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    tool: str
    arguments: dict[str, Any] = {}
    expect: Expect | None = None

    def label(self, index: int) -> str:
        """A short label for reports: `#2 add` or `#2 add (adds small ints)`."""
        return f"#{index} {self.tool}" + (f" ({self.name})" if self.name else "")


def load_cases(path: Path | str) -> list[Case]:
    """Read and check a cases.json file; raise CasesError naming the file, case index and field on bad input.

    The file is read without following a link at its last component, and never from a
    kernel file system or a special file (sandbox.serverdir.read_file).
    """
    path = Path(path)
    try:
        raw = read_file(path)
    except ServerDirError as exc:
        raise CasesError(f"{path}: not a cases file the foundry reads: {exc}") from None
    except (OSError, ValueError) as exc:
        raise CasesError(f"{path}: cannot read the cases file ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_cases_text(raw, source=str(path))


def parse_cases_text(raw: bytes, *, source: str) -> list[Case]:
    """Decode and check the bytes of a cases file (see parse_cases)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CasesError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CasesError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise CasesError(f"{source}: nested too deeply to be a cases file") from None
    return parse_cases(data, source=source)


def parse_cases(data: Any, *, source: str = "cases") -> list[Case]:
    """Check cases already decoded from JSON (`{"cases": [...]}`) and build Case models."""
    if not isinstance(data, dict) or "cases" not in data:
        raise CasesError(f'{source}: the top level must be an object {{"cases": [...]}}, got {_kind(data)}')
    extra = sorted(set(data) - {"cases"})
    if extra:
        raise CasesError(f"{source}: unknown top-level field(s) {extra}; only 'cases' is accepted")
    raw_cases = data["cases"]
    if not isinstance(raw_cases, list):
        raise CasesError(f"{source}: field 'cases' must be a list of case objects, got {_kind(raw_cases)}")
    return [_parse_case(raw, index, source) for index, raw in enumerate(raw_cases)]


def _parse_case(raw: Any, index: int, source: str) -> Case:
    where = f"{source}: case {index}"
    if not isinstance(raw, dict):
        raise CasesError(f"{where}: must be an object with 'tool', 'arguments' and 'expect', got {_kind(raw)}")
    unknown = sorted(set(raw) - set(CASE_FIELDS))
    if unknown:
        raise CasesError(f"{where}: unknown field(s) {unknown}; accepted fields are {list(CASE_FIELDS)}")
    tool = raw.get("tool")
    if not isinstance(tool, str) or not tool:
        raise CasesError(f"{where}: field 'tool' must be a non-empty string naming the tool, got {tool!r}")
    where = f"{source}: case {index} ({tool})"
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise CasesError(f"{where}: field 'name' must be a string when given, got {_kind(name)}")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, dict):
        raise CasesError(f"{where}: field 'arguments' must be an object of argument values, got {_kind(arguments)}")
    expect = _parse_expect(raw["expect"], where) if "expect" in raw else None
    return Case(name=name, tool=tool, arguments=arguments, expect=expect)


def _parse_expect(raw: Any, where: str) -> Expect:
    accepted = ", ".join(EXPECT_KINDS)
    if not isinstance(raw, dict):
        raise CasesError(f"{where}: field 'expect' must be an object with one of {accepted}, got {_kind(raw)}")
    unknown = sorted(set(raw) - set(EXPECT_KINDS))
    if unknown:
        raise CasesError(f"{where}: field 'expect' has unknown key(s) {unknown}; accepted keys are {accepted}")
    if len(raw) != 1:
        given = sorted(raw) or "none"
        raise CasesError(f"{where}: field 'expect' must have exactly one of {accepted}; got {given}")
    kind, value = next(iter(raw.items()))
    field = f"{where}: field 'expect.{kind}'"
    if kind in ("contains", "matches") and not isinstance(value, str):
        raise CasesError(f"{field} must be a string, got {_kind(value)}")
    if kind == "matches":
        if len(value) > MAX_PATTERN_CHARS:
            raise CasesError(f"{field} is {len(value)} characters long; at most {MAX_PATTERN_CHARS} are accepted")
        try:
            regex.compile(value)
        except (regex.error, OverflowError, RecursionError, ValueError) as exc:
            raise CasesError(f"{field} is not a valid regular expression: {exc}") from None
    if kind == "schema":
        if not isinstance(value, dict):
            raise CasesError(f"{field} must be a JSON schema object, got {_kind(value)}")
        problem = _schema_problem(value)
        if problem:
            raise CasesError(f"{field} {problem}")
    if kind == "error" and not isinstance(value, bool | str):
        raise CasesError(f"{field} must be true, false or a string the error message contains, got {_kind(value)}")
    return Expect(**{"schema_" if kind == "schema" else kind: value})


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """Why a schema expectation can never be checked safely, or None."""
    if len(json.dumps(schema, default=str)) > MAX_SCHEMA_CHARS:
        return f"is larger than {MAX_SCHEMA_CHARS} characters of JSON"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"is not a valid JSON schema: {exc.message}"
    remote = sorted({ref for ref in _refs(schema) if not ref.startswith("#")})
    if remote:
        return (f"refers outside itself ({', '.join(repr(r) for r in remote[:3])}); only references inside the "
                "schema ('#/...') are accepted")
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        for sample in _SAMPLES:
            validator.is_valid(sample)
    except RecursionError:
        return ('refers to itself without consuming the value (a $ref cycle such as {"$ref": "#"}), so checking '
                "any value would never end; a recursive schema must descend into properties or items")
    except Exception as exc:  # noqa: BLE001 - an unresolvable $ref and the like: any of them makes it unusable
        return f"cannot be evaluated: {type(exc).__name__}: {_clip(str(exc))}"
    return None


def _refs(node: Any) -> list[str]:
    """Every $ref / $dynamicRef / $recursiveRef value in a schema."""
    if isinstance(node, dict):
        own = [v for k, v in node.items() if k in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(v, str)]
        return own + [ref for v in node.values() for ref in _refs(v)]
    if isinstance(node, list):
        return [ref for v in node for ref in _refs(v)]
    return []


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def result_text(content: list[Any]) -> str:
    """The text blocks of a tool result's content, joined by newlines (images and other blocks are skipped)."""
    return "\n".join(getattr(block, "text", "") for block in content if getattr(block, "type", None) == "text")


def result_value(structured: Any, text: str) -> Any:
    """The VALUE of a result: structuredContent unwrapped if exactly {"result": x}, else text parsed as JSON, else text."""
    if isinstance(structured, dict) and set(structured) == {"result"}:
        return structured["result"]
    if text:
        try:
            return json.loads(text)
        except ValueError:
            return text
    # Structured content with no text block at all: the structure is the only value there is.
    return structured if structured is not None else text


def text_form(value: Any) -> str:
    """What `contains` and `matches` look at: the value itself if a string, else its JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def judge(expect: Expect | None, *, is_error: bool, value: Any, text: str) -> tuple[bool, str]:
    """Whether a result meets the expectation, and a one-line reason either way."""
    if expect is None or expect.kind != "error":
        if is_error:
            return False, f"tool returned an error result: {_clip(text)}"
        if expect is None:
            return True, "call succeeded"
    kind = expect.kind
    if kind == "error":
        wanted = expect.error
        if wanted is False:
            return (not is_error, "call succeeded" if not is_error else f"unexpected error: {_clip(text)}")
        if not is_error:
            return False, f"expected an error result, got success with value {_clip(text_form(value))}"
        if isinstance(wanted, str) and wanted not in text:
            return False, f"error message {_clip(text)!r} does not contain {wanted!r}"
        return True, "error result as expected"
    if kind == "equals":
        ok = _same(value, expect.equals)
        return ok, (f"equals {_clip(text_form(value))}" if ok else
                    f"expected {_clip(text_form(expect.equals))}, got {_clip(text_form(value))}")
    if kind == "contains":
        ok = expect.contains in text_form(value)
        return ok, (f"contains {expect.contains!r}" if ok else
                    f"{_clip(text_form(value))} does not contain {expect.contains!r}")
    if kind == "matches":
        try:
            ok = regex.search(expect.matches or "", text_form(value), timeout=MATCH_TIMEOUT_S,
                              concurrent=True) is not None
        except TimeoutError:
            return False, (f"/{_clip(expect.matches or '', 80)}/ did not finish searching the value within "
                           f"{MATCH_TIMEOUT_S:g} s (catastrophic backtracking); simplify the expression")
        return ok, (f"matches /{expect.matches}/" if ok else
                    f"{_clip(text_form(value))} does not match /{expect.matches}/")
    schema = expect.schema_ or {}
    try:
        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    except Exception as exc:  # noqa: BLE001 - the schema is untrusted input: its failure is the case's
        return False, f"the schema expectation could not be evaluated on the value: {type(exc).__name__}: {_clip(str(exc))}"
    if error is not None:
        return False, f"value {_clip(text_form(value))} fails the schema: {error.message}"
    return True, "value satisfies the schema"


async def judge_bounded(expect: Expect | None, *, is_error: bool, value: Any, text: str) -> tuple[bool, str]:
    """`judge`, without blocking the event loop and within a time limit, however hostile the expectation.

    `matches` runs in a thread (the regex package releases the GIL and has its own time
    limit); `schema` runs in a worker process that is ended at SCHEMA_TIMEOUT_S.
    """
    call = functools.partial(judge, expect, is_error=is_error, value=value, text=text)
    kind = expect.kind if expect is not None else None
    if kind == "matches":
        return await anyio.to_thread.run_sync(call)
    if kind == "schema" and not is_error:
        # Start (or reuse) the worker before the clock runs: its start-up is not the schema's time.
        await anyio.to_process.run_sync(_worker_ready, cancellable=True)
        try:
            with anyio.fail_after(SCHEMA_TIMEOUT_S):
                return await anyio.to_process.run_sync(call, cancellable=True)
        except TimeoutError:
            return False, (f"the schema expectation took more than {SCHEMA_TIMEOUT_S:g} s to check the value (a "
                           "catastrophic 'pattern'?); simplify it")
    return call()


def _worker_ready() -> None:
    """Nothing: run in a worker process, it makes the worker import this module."""


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 3 == 3.0, but true is not 1 (Python's == says it is).
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b or (isinstance(a, int | float) and isinstance(b, int | float) and a == b)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
