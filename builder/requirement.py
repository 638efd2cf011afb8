"""The Requirement: what the analysis stage understood a build request to ask for.

It is also the answer schema of the analyst's question, shown as JSON Schema to whoever answers
it (a model, or an agent), so every rule the validators below enforce is in that schema: as a
`pattern`, `enum`, bound or `not`, and, for the few that relate two fields, in a description.
"""

from __future__ import annotations

import keyword
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from builder.matchers import Expectation, fixture_names
from knowledge.text import normalize_package

SERVER_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
DEPENDENCY_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://([^{}\s]|\{[^{}\s]+\})+$"
"""scheme://..., braces only around template variables (the SDK's template parser checks the rest)."""
_IDENT = re.compile(SERVER_NAME_PATTERN)
_TOOL = re.compile(NAME_PATTERN)
_PARAM = re.compile(IDENTIFIER_PATTERN)
_NOT_KEYWORD = {"not": {"enum": sorted(keyword.kwlist)}}


def _identifier(v: str, what: str) -> str:
    if not _PARAM.match(v) or keyword.iskeyword(v):
        raise ValueError(f"{what} {v!r} is not accepted: a Python identifier of 1-64 ASCII letters, digits and '_' "
                         "(not starting with a digit), not a keyword")
    return v


ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]


class ToolParam(BaseModel):
    """One parameter of a requested tool."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="Python identifier naming the parameter (ASCII letters, digits, '_'; not a "
                      "Python keyword).", json_schema_extra={"pattern": IDENTIFIER_PATTERN, **_NOT_KEYWORD})
    type: ParamType = Field(description="JSON type of the parameter.")
    description: str = Field("", description="What the caller passes.")
    required: bool = Field(True, description="False when the parameter has a default.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        return _identifier(v, "parameter name")


def _legacy_expected(data: Any) -> Any:
    """Requirements stored before matchers held `expected`, an exact value: read it as {"equals": value}."""
    if isinstance(data, dict) and "expect" not in data:
        data = dict(data)
        data["expect"] = {"equals": data.pop("expected")} if "expected" in data else {"error": False}
    return data


class ExampleCall(BaseModel):
    """An example call of a tool and what it should give; becomes a validation case."""

    model_config = ConfigDict(extra="forbid", strict=True)

    arguments: dict[str, Any] = Field(default_factory=dict, description=(
        "Arguments of the call. A value may be a fixture reference {\"$fixture\": \"<name>\"} (the file's path) or "
        "{\"$fixture\": \"<name>\", \"as\": \"base64\" | \"text\"} (its content), naming a file of `fixtures`."))
    expect: Expectation

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _legacy_expected(data)


class ResourceExample(BaseModel):
    """A read of a resource and what it should give; becomes a validation case."""

    model_config = ConfigDict(extra="forbid", strict=True)

    uri: str = Field(description="The concrete URI read: the resource's own, or one its template matches "
                                 "(http-status://404 for http-status://{code}).",
                     json_schema_extra={"pattern": URI_PATTERN})
    expect: Expectation


class PromptExample(BaseModel):
    """A get of a prompt and what it should give; becomes a validation case."""

    model_config = ConfigDict(extra="forbid", strict=True)

    arguments: dict[str, str] = Field(default_factory=dict, description="Prompt arguments (strings), by name.")
    expect: Expectation


class FixtureSpec(BaseModel):
    """A small input file the code writer's fixtures.py must make, for example calls to refer to."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="File name, e.g. sample.xlsx (letters, digits, '_', '-', '.'; no '/').",
                      json_schema_extra={"pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"})
    description: str = Field(min_length=1, description="Exactly what the file holds, so that the examples' "
                                                       "expectations follow from it.")

    @field_validator("name")
    @classmethod
    def _file_name(cls, v: str) -> str:
        from sandbox.cases import FIXTURE_NAME

        if not FIXTURE_NAME.match(v):
            raise ValueError(f"fixture name {v!r} is not accepted: a file name of 1-100 letters, digits, '_', '-', "
                             "'.', not starting with '.' or '-', no '/'")
        return v


class ToolSpec(BaseModel):
    """One tool the requested server must expose."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="Tool name: a letter, then letters, digits or '_', at most 64 characters.",
                      json_schema_extra={"pattern": NAME_PATTERN})
    description: str = Field(min_length=1, description="What the tool does, for the calling agent.")
    params: list[ToolParam] = Field(default_factory=list, description="Parameters in call order.")
    returns: str = Field("", description="What the tool returns.")
    examples: list[ExampleCall] = Field(default_factory=list, description="1-3 example calls and what each gives.")

    @field_validator("name")
    @classmethod
    def _tool_name(cls, v: str) -> str:
        if not _TOOL.match(v):
            raise ValueError(f"tool name {v!r} is not accepted: start with a letter, then letters, digits or '_', "
                             "at most 64 characters")
        return v


class ResourceSpec(BaseModel):
    """A resource (a fixed URI) or resource template (a URI with {variables}) the server must offer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    uri: str = Field(description="scheme://... URI; with {name} variables (RFC 6570) it is a template, e.g. "
                                 "http-status://{code}.", json_schema_extra={"pattern": URI_PATTERN})
    name: str = Field(description="Short name: a letter, then letters, digits or '_'.",
                      json_schema_extra={"pattern": NAME_PATTERN})
    description: str = Field(min_length=1, description="What reading it gives, for the calling agent.")
    mime_type: str = Field("text/plain", description="MIME type of the content, e.g. text/plain or "
                                                     "application/json.",
                           json_schema_extra={"pattern": r"^[\w.+-]+/[\w.+-]+$"})
    examples: list[ResourceExample] = Field(default_factory=list, description=(
        "1-3 reads and what each gives; each uri is this resource's own, or one its template matches."))

    @field_validator("uri")
    @classmethod
    def _template(cls, v: str) -> str:
        from mcp.shared.uri_template import UriTemplate

        if not re.match(URI_PATTERN, v):
            raise ValueError(f"uri {v!r} is not accepted: write scheme://..., e.g. http-status://{{code}}")
        try:
            UriTemplate.parse(v)
        except Exception as e:  # noqa: BLE001 - the SDK's InvalidUriTemplate says what is wrong
            raise ValueError(f"uri {v!r} is not a valid URI template: {e}") from None
        return v

    @field_validator("name")
    @classmethod
    def _short_name(cls, v: str) -> str:
        if not _TOOL.match(v):
            raise ValueError(f"resource name {v!r} is not accepted: a letter, then letters, digits or '_'")
        return v

    @model_validator(mode="after")
    def _examples_match(self) -> ResourceSpec:
        for example in self.examples:
            if not self.serves(example.uri):
                raise ValueError(f"example uri {example.uri!r} is not served by {self.uri!r}; give the resource's "
                                 "own URI, or one its template matches")
        return self

    @field_validator("mime_type")
    @classmethod
    def _mime(cls, v: str) -> str:
        if not re.match(r"^[\w.+-]+/[\w.+-]+$", v):
            raise ValueError(f"mime_type {v!r} is not a MIME type such as text/plain or application/json")
        return v

    @property
    def is_template(self) -> bool:
        """True when the URI has {variables}."""
        return "{" in self.uri

    def serves(self, uri: str) -> bool:
        """Whether reading `uri` reaches this resource."""
        from mcp.shared.uri_template import UriTemplate

        return UriTemplate.parse(self.uri).match(uri) is not None if self.is_template else uri == self.uri


class PromptArgument(BaseModel):
    """One argument of a requested prompt (prompt arguments are strings)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="Python identifier naming the argument (not a keyword).",
                      json_schema_extra={"pattern": IDENTIFIER_PATTERN, **_NOT_KEYWORD})
    description: str = Field("", description="What the caller passes.")
    required: bool = Field(True, description="False when it has a default.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        return _identifier(v, "prompt argument name")


class PromptSpec(BaseModel):
    """A prompt (a message template the client offers its user) the server must offer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="Prompt name: a letter, then letters, digits or '_', at most 64 characters.",
                      json_schema_extra={"pattern": NAME_PATTERN})
    description: str = Field(min_length=1, description="What the prompt is for.")
    arguments: list[PromptArgument] = Field(default_factory=list, description="Its arguments.")
    examples: list[PromptExample] = Field(default_factory=list, description=(
        "1-2 gets and what each gives; the value judged is the list of messages [{\"role\", \"content\"}]."))

    @field_validator("name")
    @classmethod
    def _prompt_name(cls, v: str) -> str:
        if not _TOOL.match(v):
            raise ValueError(f"prompt name {v!r} is not accepted: start with a letter, then letters, digits or '_', "
                             "at most 64 characters")
        return v

    @model_validator(mode="after")
    def _known_arguments(self) -> PromptSpec:
        declared = {a.name for a in self.arguments}
        for example in self.examples:
            unknown = sorted(set(example.arguments) - declared)
            if unknown:
                raise ValueError(f"prompt {self.name} example passes undeclared argument(s) {unknown}; declared: "
                                 f"{sorted(declared)}")
        return self


class Requirement(BaseModel):
    """A build request, understood: the server to write, its tools, resources, prompts, dependencies and needs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server_name: str = Field(description="Lowercase Python identifier naming the server (e.g. text_stats); the "
                                         "code keeps it.", json_schema_extra={"pattern": SERVER_NAME_PATTERN,
                                                                              **_NOT_KEYWORD})
    summary: str = Field(min_length=1, description="One paragraph: what the server does.")
    category: str = Field("general", description="A coarse category such as text, data, time, files, web.")
    language: str = Field("en", description=(
        "BCP 47 tag of the language the request is written in (en, zh, de, pt-BR). Tool, resource and prompt "
        "descriptions, error messages and the README are written in it; names and code stay ASCII English."),
        json_schema_extra={"pattern": LANGUAGE_PATTERN})
    tools: list[ToolSpec] = Field(min_length=1, max_length=20, description="The tools to expose; names unique.")
    resources: list[ResourceSpec] = Field(default_factory=list, max_length=20, description=(
        "Resources and resource templates to offer, when the request asks for them; URIs unique."))
    prompts: list[PromptSpec] = Field(default_factory=list, max_length=20, description=(
        "Prompts to offer, when the request asks for them; names unique."))
    fixtures: list[FixtureSpec] = Field(default_factory=list, max_length=20, description=(
        "Input files (a spreadsheet, an image) that examples refer to with {\"$fixture\": \"<name>\"}; every "
        "referenced name must be listed here. The code writer makes them with fixtures.py."))
    dependencies: list[str] = Field(default_factory=list, description="PyPI packages needed besides mcp.",
                                    json_schema_extra={"items": {"type": "string", "pattern": DEPENDENCY_PATTERN}})
    constraints: list[str] = Field(default_factory=list, description="Constraints the code must respect.")
    needs_network: bool = Field(False, description="True when the tools must reach the network at run time.")
    secrets: list[str] = Field(default_factory=list, description="Environment variable names of needed secrets.",
                               json_schema_extra={"items": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$"}})

    @field_validator("server_name")
    @classmethod
    def _server_name(cls, v: str) -> str:
        if not _IDENT.match(v) or keyword.iskeyword(v):
            raise ValueError(f"server_name {v!r} is not accepted: a lowercase Python identifier of 1-64 characters "
                             "(letter first, then letters, digits, '_'), e.g. 'text_stats'")
        return v

    @field_validator("dependencies")
    @classmethod
    def _deps(cls, v: list[str]) -> list[str]:
        for d in v:
            if not normalize_package(d):
                raise ValueError(f"dependency {d!r} is not a requirement specifier (e.g. 'pypdf' or 'pypdf==5.1.0')")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if not re.match(LANGUAGE_PATTERN, v):
            raise ValueError(f"language {v!r} is not a BCP 47 tag such as 'en', 'zh' or 'pt-BR'")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.match(r"^[A-Z_][A-Z0-9_]*$", s)]
        if bad:
            raise ValueError(f"secrets {bad} are not environment variable names (upper case, digits, '_'), "
                             "e.g. OPENWEATHER_API_KEY")
        return v

    @model_validator(mode="after")
    def _unique_tools(self) -> Requirement:
        for what, names in (("tool names", [t.name for t in self.tools]),
                            ("resource URIs", [r.uri for r in self.resources]),
                            ("prompt names", [p.name for p in self.prompts]),
                            ("fixture names", [f.name for f in self.fixtures])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _fixtures_declared(self) -> Requirement:
        declared = {f.name for f in self.fixtures}
        used = {n for t in self.tools for e in t.examples for n in fixture_names(e.arguments)}
        used |= {n for p in self.prompts for e in p.examples for n in fixture_names(e.arguments)}
        missing = sorted(used - declared)
        if missing:
            raise ValueError(f"examples refer to fixture(s) {missing} that `fixtures` does not list; add each with "
                             "a description of what the file holds")
        return self

    def tool_names(self) -> list[str]:
        """Names of the requested tools."""
        return [t.name for t in self.tools]

    def param_names(self) -> list[str]:
        """Every parameter name of every tool, once."""
        return sorted({p.name for t in self.tools for p in t.params})

    def dependency_names(self) -> list[str]:
        """Normalized package names of the dependencies."""
        return sorted({normalize_package(d) for d in self.dependencies})
