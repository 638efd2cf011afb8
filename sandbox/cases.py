"""Test cases for a server under validation: the cases.json format, its loader, and how a result is judged.

Format (other parts of the project write it, so it stays exactly this):

    {"cases": [{"name": "optional", "tool": "add", "arguments": {"a": 1, "b": 2},
                "expect": {"equals": 3}},
               {"resource": "http-status://404", "expect": {"contains": "Not Found"}},
               {"prompt": "explain_status", "arguments": {"code": "404"}, "expect": {"contains": "404"}}]}

A case names exactly one of `tool` (call it with `arguments`), `resource` (read that URI; a
template's concrete URI, no arguments) or `prompt` (get it with `arguments`, all strings).
Cases run in order, in one session with one server process.

`expect` holds exactly one of `equals` (any JSON value), `contains` (string), `matches`
(regex, searched), `schema` (a JSON schema the value must satisfy) or `error` (true: the
call must fail; a string: it fails and the message contains it). With no `expect` the call
just has to succeed. A tool fails with an isError result; a resource read or a prompt get
fails with a JSON-RPC error.

The value judged: a tool's return value (structured content, else its text parsed as JSON,
else the text); a resource's content (its text, parsed when its mimeType is JSON; base64 for
a blob; a list when there are several); a prompt's messages as [{"role", "content"}], the
content being the text of a text message.

An argument value (at any depth) may be a fixture reference, {"$fixture": "sample.xlsx"}, or
{"$fixture": "sample.xlsx", "as": "path" | "base64" | "text"}: a regular file in the server
directory's fixtures/, made there by its fixtures.py before the server started (see
sandbox.fixtures), or shipped there when it has no fixtures.py. It is replaced by the file's
absolute path as the server sees it (the default), its content in base64, or its content as
UTF-8 text.

A cases file is untrusted input (a server directory's own cases.json, a model's draft):
`matches` runs with the `regex` package's time limit, off the event loop; a `schema` is
checked in a worker process with a time limit (jsonschema evaluates its `pattern`s with
`re`, which holds the GIL); a schema that refers to itself without consuming the value
(`{"$ref": "#"}`) or reaches outside itself is refused when the file is read.
"""

from __future__ import annotations

import functools
import json
import re
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
CaseKind = Literal["tool", "resource", "prompt"]
CASE_KINDS: tuple[str, ...] = ("tool", "resource", "prompt")
CASE_FIELDS: tuple[str, ...] = ("name", "tool", "resource", "prompt", "arguments", "expect")
FIXTURE_KEY = "$fixture"
FIXTURE_FORMS: tuple[str, ...] = ("path", "base64", "text")
FIXTURES_DIR = "fixtures"
"""Where fixtures.py writes, relative to the server's working directory."""
FIXTURE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
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
    """One tool call, resource read or prompt get, and what it should give."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    tool: str | None = None
    resource: str | None = None
    """A concrete URI: a static resource's, or one a listed template matches."""
    prompt: str | None = None
    arguments: dict[str, Any] = {}
    expect: Expect | None = None

    @property
    def kind(self) -> CaseKind:
        """Which of tool, resource or prompt the case exercises."""
        return "resource" if self.resource is not None else "prompt" if self.prompt is not None else "tool"

    @property
    def target(self) -> str:
        """The tool name, resource URI or prompt name."""
        return self.resource or self.prompt or self.tool or ""

    def label(self, index: int) -> str:
        """A short label for reports: `#2 add`, `#3 resource http-status://404` or `#2 add (adds small ints)`."""
        what = self.target if self.kind == "tool" else f"{self.kind} {self.target}"
        return f"#{index} {what}" + (f" ({self.name})" if self.name else "")

    def fixtures(self) -> list[str]:
        """Names of the fixtures the case's arguments refer to."""
        return sorted({ref[FIXTURE_KEY] for ref in _fixture_refs(self.arguments)})


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
    kinds = [k for k in CASE_KINDS if k in raw]
    if len(kinds) != 1:
        raise CasesError(f"{where}: give exactly one of 'tool' (a tool to call), 'resource' (a URI to read) or "
                         f"'prompt' (a prompt to get); got {kinds or 'none'}")
    kind = kinds[0]
    target = raw[kind]
    if not isinstance(target, str) or not target:
        what = {"tool": "naming the tool", "resource": "the URI to read", "prompt": "naming the prompt"}[kind]
        raise CasesError(f"{where}: field '{kind}' must be a non-empty string {what}, got {target!r}")
    where = f"{source}: case {index} ({target})" if kind == "tool" else f"{source}: case {index} ({kind} {target})"
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise CasesError(f"{where}: field 'name' must be a string when given, got {_kind(name)}")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, dict):
        raise CasesError(f"{where}: field 'arguments' must be an object of argument values, got {_kind(arguments)}")
    if kind == "resource" and arguments:
        raise CasesError(f"{where}: a resource case takes no 'arguments'; put the values in the URI "
                         "(e.g. 'http-status://404' for the template 'http-status://{code}')")
    _check_fixture_refs(arguments, f"{where}: field 'arguments'")
    if kind == "prompt":
        bad = sorted(k for k, v in arguments.items() if not isinstance(v, str) and not _is_fixture_ref(v))
        if bad:
            raise CasesError(f"{where}: prompt arguments are strings; {bad} are not (write numbers as \"404\")")
    expect = _parse_expect(raw["expect"], where) if "expect" in raw else None
    return Case(name=name, arguments=arguments, expect=expect, **{kind: target})


def _is_fixture_ref(value: Any) -> bool:
    return isinstance(value, dict) and FIXTURE_KEY in value


def _fixture_refs(value: Any) -> list[dict[str, Any]]:
    """Every fixture reference inside an argument value, at any depth."""
    if _is_fixture_ref(value):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [ref for item in items for ref in _fixture_refs(item)]


def _check_fixture_refs(arguments: dict[str, Any], where: str) -> None:
    forms = ", ".join(f'"{f}"' for f in FIXTURE_FORMS)
    for ref in _fixture_refs(arguments):
        extra = sorted(set(ref) - {FIXTURE_KEY, "as"})
        name, form = ref[FIXTURE_KEY], ref.get("as", "path")
        if extra:
            raise CasesError(f"{where}: fixture reference {ref!r} has unknown key(s) {extra}; write "
                             f'{{"{FIXTURE_KEY}": "<file name>", "as": {forms}}}')
        if not isinstance(name, str) or not FIXTURE_NAME.match(name):
            raise CasesError(f"{where}: fixture name {name!r} is not accepted: a file name of 1-100 letters, digits, "
                             "'_', '-', '.', not starting with '.' or '-', and no '/' (fixtures.py writes "
                             f"{FIXTURES_DIR}/<name>)")
        if form not in FIXTURE_FORMS:
            raise CasesError(f"{where}: fixture reference {name!r} has \"as\": {form!r}; accepted: {forms}")


def expand_fixtures(arguments: dict[str, Any], resolve: Any) -> dict[str, Any]:
    """`arguments` with each fixture reference replaced by `resolve(name, form)` (what it raises propagates)."""
    def walk(value: Any) -> Any:
        if _is_fixture_ref(value):
            return resolve(value[FIXTURE_KEY], value.get("as", "path"))
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(arguments)


def parse_expect(raw: Any, where: str = "expect") -> Expect:
    """Check one expectation object ({"equals": 3}) as a case's `expect` is checked; CasesError names `where`."""
    return _parse_expect(raw, where)


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


def resource_value(contents: list[Any]) -> Any:
    """The VALUE of a resource read: each content's text (parsed when its mimeType is JSON) or base64 blob;
    one content gives that value, several a list."""
    values = []
    for c in contents:
        text = getattr(c, "text", None)
        if text is None:
            values.append(getattr(c, "blob", None))
            continue
        mime = (getattr(c, "mime_type", None) or "").split(";", 1)[0].strip().lower()
        if mime == "application/json" or mime.endswith("+json"):
            try:
                text = json.loads(text)
            except ValueError:
                pass  # a server that mislabels its content is judged on what it sent
        values.append(text)
    return values[0] if len(values) == 1 else values


def prompt_value(messages: list[Any]) -> list[dict[str, Any]]:
    """The VALUE of a prompt get: [{"role", "content"}], content being the text of a text message,
    else {"type": ...} naming what it is."""
    out = []
    for m in messages:
        content = m.content
        text = getattr(content, "text", None)
        out.append({"role": m.role, "content": text if getattr(content, "type", None) == "text" else
                    {"type": getattr(content, "type", "unknown")}})
    return out


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


def judge(expect: Expect | None, *, is_error: bool, value: Any, text: str,
          failed: str = "tool returned an error result") -> tuple[bool, str]:
    """Whether a result meets the expectation, and a one-line reason either way (`failed` words an error)."""
    if expect is None or expect.kind != "error":
        if is_error:
            return False, f"{failed}: {_clip(text)}"
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


async def judge_bounded(expect: Expect | None, *, is_error: bool, value: Any, text: str,
                        failed: str = "tool returned an error result") -> tuple[bool, str]:
    """`judge`, without blocking the event loop and within a time limit, however hostile the expectation.

    `matches` runs in a thread (the regex package releases the GIL and has its own time
    limit); `schema` runs in a worker process that is ended at SCHEMA_TIMEOUT_S.
    """
    call = functools.partial(judge, expect, is_error=is_error, value=value, text=text, failed=failed)
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
