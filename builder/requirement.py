"""The Requirement: what the analysis stage understood a build request to ask for."""

from __future__ import annotations

import keyword
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from knowledge.text import normalize_package

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOOL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]


class ToolParam(BaseModel):
    """One parameter of a requested tool."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Python identifier naming the parameter.")
    type: ParamType = Field(description="JSON type of the parameter.")
    description: str = Field("", description="What the caller passes.")
    required: bool = Field(True, description="False when the parameter has a default.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.isidentifier() or keyword.iskeyword(v):
            raise ValueError(f"parameter name {v!r} is not a Python identifier (letters, digits, '_', not a keyword)")
        return v


class ExampleCall(BaseModel):
    """An example call of a tool and what it should return; becomes a validation case."""

    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="Arguments of the call.")
    expected: Any = Field(None, description="The exact value the tool returns for these arguments (JSON).")


class ToolSpec(BaseModel):
    """One tool the requested server must expose."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Tool name: a letter, then letters, digits or '_', at most 64 characters.")
    description: str = Field(min_length=1, description="What the tool does, for the calling agent.")
    params: list[ToolParam] = Field(default_factory=list, description="Parameters in call order.")
    returns: str = Field("", description="What the tool returns.")
    examples: list[ExampleCall] = Field(default_factory=list, description="Example calls with expected results.")

    @field_validator("name")
    @classmethod
    def _tool_name(cls, v: str) -> str:
        if not _TOOL.match(v):
            raise ValueError(f"tool name {v!r} is not accepted: start with a letter, then letters, digits or '_', "
                             "at most 64 characters")
        return v


class Requirement(BaseModel):
    """A build request, understood: the server to write, its tools, dependencies and needs."""

    model_config = ConfigDict(extra="forbid")

    server_name: str = Field(description="Lowercase Python identifier naming the server (e.g. text_stats).")
    summary: str = Field(min_length=1, description="One paragraph: what the server does.")
    category: str = Field("general", description="A coarse category such as text, data, time, files, web.")
    tools: list[ToolSpec] = Field(min_length=1, max_length=20, description="The tools to expose.")
    dependencies: list[str] = Field(default_factory=list, description="PyPI packages needed besides mcp.")
    constraints: list[str] = Field(default_factory=list, description="Constraints the code must respect.")
    needs_network: bool = Field(False, description="True when the tools must reach the network at run time.")
    secrets: list[str] = Field(default_factory=list, description="Environment variable names of needed secrets.")

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

    @model_validator(mode="after")
    def _unique_tools(self) -> Requirement:
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tool names must be unique; repeated: {', '.join(dupes)}")
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
