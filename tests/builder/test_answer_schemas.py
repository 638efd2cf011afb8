"""The answer schemas (Requirement for the analyst, ServerDraft for the code writer) say what the validators enforce.

Whoever answers a question (a model behind an endpoint, or an agent) sees only the JSON Schema.
So every rule is checked both ways: an answer the pydantic validators refuse, the JSON Schema
refuses too; and a rule that relates two fields, which a schema cannot express, is written in a
description.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from builder.draft import ServerDraft
from builder.requirement import Requirement

VALID: dict[str, Any] = {
    "server_name": "http_status", "summary": "Reason phrases of HTTP status codes.", "language": "de",
    "tools": [{"name": "reason_phrase", "description": "Die Bedeutung eines HTTP-Statuscodes.",
               "params": [{"name": "code", "type": "integer", "description": "Der Statuscode."}],
               "returns": "the phrase",
               "examples": [{"arguments": {"code": 404}, "expect": {"equals": "Not Found"}},
                            {"arguments": {"code": 299}, "expect": {"error": "unbekannt"}},
                            {"arguments": {"code": 200}, "expect": {"matches": "^O[Kk]$"}}]},
              {"name": "sheet_rows", "description": "Rows of a workbook.",
               "params": [{"name": "path", "type": "string"}],
               "examples": [{"arguments": {"path": {"$fixture": "sample.xlsx"}},
                             "expect": {"schema": {"type": "array", "minItems": 2}}}]}],
    "resources": [{"uri": "http-status://{code}", "name": "status", "description": "One code.",
                   "examples": [{"uri": "http-status://404", "expect": {"contains": "Not Found"}}]}],
    "prompts": [{"name": "explain_status", "description": "Explain a code.",
                 "arguments": [{"name": "code", "description": "The code."}],
                 "examples": [{"arguments": {"code": "404"}, "expect": {"contains": "404"}}]}],
    "fixtures": [{"name": "sample.xlsx", "description": "One sheet, rows (name, age): (Ann, 31), (Bo, 4)."}],
    "dependencies": ["openpyxl==3.1.5"], "secrets": ["STATUS_API_KEY"],
}


def schema_accepts(schema: dict[str, Any], value: Any) -> bool:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return not list(validator.iter_errors(value))


def mutate(path: str, value: Any) -> dict[str, Any]:
    """VALID with the field at a dotted path (list indexes as numbers) set to `value`."""
    data = copy.deepcopy(VALID)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = data
    for p in parents:
        target = target[p]
    target[last] = value
    return data


def test_the_answer_schemas_are_valid_json_schemas_and_accept_a_full_answer():
    for model in (Requirement, ServerDraft):
        jsonschema.Draft202012Validator.check_schema(model.model_json_schema())
    assert schema_accepts(Requirement.model_json_schema(), VALID)
    Requirement.model_validate(VALID)


REFUSED = {
    "server name with capitals": ("server_name", "Http-Status"),
    "server name a keyword": ("server_name", "class"),
    "tool name starting with a digit": ("tools.0.name", "1phrase"),
    "parameter name a keyword": ("tools.0.params.0.name", "def"),
    "parameter name with a dash": ("tools.0.params.0.name", "status-code"),
    "unknown parameter type": ("tools.0.params.0.type", "str"),
    "empty tool description": ("tools.0.description", ""),
    "no tools": ("tools", []),
    "too many tools": ("tools", [VALID["tools"][0] | {"name": f"t{i}"} for i in range(21)]),
    "an unknown field": ("notes", "free text"),
    "the old exact value beside an expectation": ("tools.0.examples.0.expected", 3),
    "an empty expectation": ("tools.0.examples.0.expect", {}),
    "two matchers at once": ("tools.0.examples.0.expect", {"equals": 1, "contains": "1"}),
    "an unknown matcher": ("tools.0.examples.0.expect", {"approx": 1.5}),
    "a regex that does not compile": ("tools.0.examples.0.expect", {"matches": "(unclosed"}),
    "contains with a number": ("tools.0.examples.0.expect", {"contains": 3}),
    "error with a number": ("tools.0.examples.0.expect", {"error": 1}),
    "schema that is not an object": ("tools.0.examples.0.expect", {"schema": "array"}),
    "a dependency that is no specifier": ("dependencies", ["==1.0"]),
    "a language that is no tag": ("language", "Deutsch"),
    "a resource URI without a scheme": ("resources.0.uri", "status/{code}"),
    "a resource template left open": ("resources.0.uri", "http-status://{code"),
    "a MIME type without a subtype": ("resources.0.mime_type", "text"),
    "a prompt name with a space": ("prompts.0.name", "explain status"),
    "a prompt argument that is not a string": ("prompts.0.examples.0.arguments", {"code": 404}),
    "a fixture name with a path": ("fixtures.0.name", "../sample.xlsx"),
    "a secret that is no variable name": ("secrets", ["my api key"]),
}


@pytest.mark.parametrize("path, value", REFUSED.values(), ids=REFUSED.keys())
def test_what_the_validators_refuse_the_requirement_schema_refuses(path, value):
    data = mutate(path, value)
    with pytest.raises(ValidationError):
        Requirement.model_validate(data)
    assert not schema_accepts(Requirement.model_json_schema(), data), f"the schema accepts {path}={value!r}"


# Rules between two fields: a JSON Schema cannot say them, so its descriptions do.
DESCRIBED = {
    "tool names repeated": ("tools.1.name", "reason_phrase", "names unique"),
    "an undeclared fixture": ("fixtures", [], "every referenced name must be listed here"),
    "an example URI the template does not serve": ("resources.0.examples.0.uri", "other://404",
                                                   "one its template matches"),
    "a schema matcher that is no schema": ("tools.1.examples.0.expect", {"schema": {"type": "nope"}},
                                           "A JSON schema (draft 2020-12)"),
}


@pytest.mark.parametrize("path, value, words", DESCRIBED.values(), ids=DESCRIBED.keys())
def test_rules_between_fields_are_refused_and_written_in_the_schema(path, value, words):
    with pytest.raises(ValidationError):
        Requirement.model_validate(mutate(path, value))
    assert words in json.dumps(Requirement.model_json_schema())


def test_requirements_stored_with_exact_values_still_load_as_equals():
    old = copy.deepcopy(VALID)
    old["tools"][0]["examples"] = [{"arguments": {"code": 404}, "expected": "Not Found"}, {"arguments": {"code": 1}}]
    req = Requirement.model_validate(old)
    assert [e.expect.as_json() for e in req.tools[0].examples] == [{"equals": "Not Found"}, {"error": False}]
    assert "expected" not in json.dumps(Requirement.model_json_schema()["$defs"]["ExampleCall"])


FILES = {"server.py": "x", "requirements.txt": "mcp==2.3.0", "cases.json": "{}"}
DRAFTS_REFUSED = {
    "a missing cases.json": {k: v for k, v in FILES.items() if k != "cases.json"},
    "an absolute path": FILES | {"/etc/x": ""},
    "a path going up": FILES | {"../x.py": ""},
    "a path through '.'": FILES | {"a/./x.py": ""},
    "a path with a space": FILES | {"my file.py": ""},
    "a trailing slash": FILES | {"data/": ""},
    "too many files": FILES | {f"f{i}.txt": "" for i in range(20)},
    "a file too big": FILES | {"big.txt": "x" * 200_001},
}


@pytest.mark.parametrize("files", DRAFTS_REFUSED.values(), ids=DRAFTS_REFUSED.keys())
def test_what_the_draft_validator_refuses_the_draft_schema_refuses(files):
    with pytest.raises(ValidationError):
        ServerDraft(files=files)
    assert not schema_accepts(ServerDraft.model_json_schema(), {"files": files})


def test_the_draft_schema_accepts_what_the_validator_accepts_and_says_the_byte_limits():
    files = FILES | {"fixtures.py": "", "pkg/util.py": "", "README.md": ""}
    ServerDraft(files=files)
    assert schema_accepts(ServerDraft.model_json_schema(), {"files": files})
    description = ServerDraft.model_json_schema()["properties"]["files"]["description"]
    assert "200000 bytes each" in description and "600000 bytes in all" in description
