"""Pydantic models that cross the knowledge package's boundary: cases, queries, matches and the side tables."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from knowledge.text import error_signature, normalize_package, requirement_hash

_SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class ToolInfo(BaseModel):
    """One tool a stored server exposes, as its list_tools entry describes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    """The tool's name as the client calls it."""
    description: str = ""
    """What the tool does, in the server's own words."""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    """JSON schema of the arguments (stored as JSON text)."""
    output_schema: dict[str, Any] | None = None
    """JSON schema of the result, when the server declares one (the shape a caller gets back)."""
    annotations: dict[str, Any] = Field(default_factory=dict)
    """MCP tool annotations (read_only_hint, ...), stored as JSON text."""

    def param_names(self) -> list[str]:
        """Names of the top-level parameters in the input schema."""
        props = self.input_schema.get("properties", {})
        return list(props) if isinstance(props, dict) else []


class ValidationSummary(BaseModel):
    """The outcome of validating a server: how many cases passed out of how many, and a short note."""

    model_config = ConfigDict(extra="forbid")

    passed: int = Field(default=0, ge=0)
    """Validation cases that passed."""
    total: int = Field(default=0, ge=0)
    """Validation cases run."""
    detail: str = ""
    """A short human-readable summary (failures, warnings)."""

    @model_validator(mode="after")
    def _passed_within_total(self) -> ValidationSummary:
        if self.passed > self.total:
            raise ValueError(
                f"validation_summary.passed ({self.passed}) exceeds total ({self.total}); passed must be <= total"
            )
        return self

    @property
    def pass_rate(self) -> float:
        """Fraction of cases that passed; 0 when nothing ran."""
        return self.passed / self.total if self.total else 0.0


class SuccessCase(BaseModel):
    """A server that was built (or shipped as a starter) and validated, as the repository remembers it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=_new_id)
    """Stable identifier; kept when the same server and requirement are stored again."""
    request_text: str = Field(min_length=1)
    """The user's request, verbatim."""
    requirement_hash: str = ""
    """Hash of the normalized request; computed from request_text when left empty."""
    server_name: str
    """The deployed server's name: lowercase letters, digits, '_', '-', '.', at most 64 characters."""
    summary: str = ""
    """What the server does, one paragraph."""
    category: str = ""
    """A coarse category (e.g. 'text', 'data', 'time'); benchmarks are grouped by it."""
    tags: list[str] = Field(default_factory=list)
    """Free keywords that help full-text search."""
    tools: list[ToolInfo] = Field(default_factory=list)
    """The tools the server exposes."""
    dependencies: list[str] = Field(default_factory=list)
    """Requirement specifiers as installed (e.g. 'pypdf==7.1.1')."""
    files: dict[str, str] = Field(default_factory=dict)
    """Relative path -> file content of the server's source; may be empty when deployed_dir is set."""
    deployed_dir: str | None = None
    """Where the deployed server lives on disk, if deployed."""
    validation_summary: ValidationSummary = Field(default_factory=ValidationSummary)
    """How validation went."""
    verdict: Literal["passed", "partial", "failed"] = "passed"
    """The validator's overall verdict."""
    build_seconds: float = Field(default=0.0, ge=0)
    """Wall-clock seconds the build took."""
    iterations: int = Field(default=0, ge=0)
    """Code -> Reason -> Act turns the build used."""
    tokens: int = Field(default=0, ge=0)
    """LLM tokens the build used."""
    created_at: datetime = Field(default_factory=_now)
    """When the case was first stored (UTC)."""
    updated_at: datetime = Field(default_factory=_now)
    """When the case was last stored or changed (UTC)."""
    times_reused: int = Field(default=0, ge=0)
    """How many builds were answered from this case."""
    source: Literal["starter", "build", "user"] = "build"
    """Whether the case ships with the package, came from a build, or is a server a user wrote and deployed."""

    @field_validator("server_name")
    @classmethod
    def _check_server_name(cls, value: str) -> str:
        if not _SERVER_NAME.match(value):
            raise ValueError(
                f"server_name {value!r} is not accepted: use 1-64 lowercase letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _fill_hash(self) -> SuccessCase:
        if not self.requirement_hash:
            self.requirement_hash = requirement_hash(self.request_text)
        return self

    def dependency_names(self) -> list[str]:
        """Normalized package names of the dependencies, without versions or extras."""
        return sorted({normalize_package(d) for d in self.dependencies if normalize_package(d)})


class SearchQuery(BaseModel):
    """A structured search: free text plus the features and packages the wanted server should have."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    """What the user asked for, in their words."""
    tool_names: list[str] = Field(default_factory=list)
    """Tool names the server should expose (e.g. 'extract_text')."""
    tool_params: list[str] = Field(default_factory=list)
    """Parameter names the tools should take (e.g. 'timezone')."""
    dependencies: list[str] = Field(default_factory=list)
    """Packages the server is expected to use (e.g. 'pypdf')."""

    @model_validator(mode="after")
    def _not_empty(self) -> SearchQuery:
        if not (self.text.strip() or self.tool_names or self.tool_params or self.dependencies):
            raise ValueError("SearchQuery is empty: give text, tool_names, tool_params or dependencies")
        return self


class SearchFilters(BaseModel):
    """Conditions every returned case must meet; all given conditions apply together."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    dependency: str | None = None
    """The case's dependencies must include this package (name only, any version)."""
    min_validation_pass: float | None = Field(default=None, ge=0.0, le=1.0)
    """The case's validation pass rate must be at least this (0..1)."""
    server_name: str | None = None
    """The case's server name must equal this."""
    source: Literal["starter", "build", "user"] | None = None
    """Only cases from this source."""
    verdict: Literal["passed", "partial", "failed"] | None = None
    """Only cases with this verdict."""


class Components(BaseModel):
    """The four component scores of a hybrid match, each in 0..1."""

    vector: float = 0.0
    """Cosine similarity of the embeddings, clipped at 0."""
    fts: float = 0.0
    """BM25 score saturated into 0..1: b / (b + 2)."""
    features: float = 0.0
    """Overlap of requested tool names and parameters with the case's."""
    dependencies: float = 0.0
    """Share of the requested packages the case uses."""


class Match(BaseModel):
    """One search result: the case, its combined score, the component scores and why it matched."""

    case: SuccessCase
    """The stored case."""
    score: float
    """Combined score in 0..1 (see knowledge.search for the formula)."""
    components: Components
    """Each component's score."""
    reason: str
    """A short explanation naming the strongest evidence."""


class Template(BaseModel):
    """A reusable skeleton extracted from one or more successful servers."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=_new_id)
    """Stable identifier."""
    name: str = Field(min_length=1)
    """Short name of the pattern (e.g. 'stateless-text-transform')."""
    description: str = ""
    """When to use this skeleton."""
    category: str = ""
    """Category of servers it fits."""
    files: dict[str, str] = Field(default_factory=dict)
    """Relative path -> content of the skeleton."""
    dependencies: list[str] = Field(default_factory=list)
    """Requirement specifiers the skeleton needs."""
    source_case_ids: list[str] = Field(default_factory=list)
    """Cases the template was extracted from."""
    created_at: datetime = Field(default_factory=_now)
    """When stored (UTC)."""


class DependencyEdge(BaseModel):
    """Aggregated package <-> functionality edge: how often they went together and how that ended."""

    package: str
    """Normalized package name."""
    feature: str
    """A functionality label (e.g. 'pdf text extraction')."""
    count: int
    """Builds that used the package for the feature."""
    successes: int
    """Of those, the ones that succeeded."""
    failures: int
    """Of those, the ones that failed."""


class BenchmarkRow(BaseModel):
    """Performance of one build, grouped by category."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1)
    """Category of the server built."""
    server_name: str = ""
    """Which server, if known."""
    build_seconds: float = Field(ge=0)
    """Wall-clock build time."""
    iterations: int = Field(ge=0)
    """Loop turns used."""
    tokens: int = Field(default=0, ge=0)
    """LLM tokens used."""
    tool_latency_ms: float = Field(default=0.0, ge=0)
    """Median tool-call latency seen by the validator."""
    created_at: datetime = Field(default_factory=_now)
    """When recorded (UTC)."""


class FailureRecord(BaseModel):
    """One failure the healer saw, and what happened when it applied a strategy."""

    model_config = ConfigDict(extra="forbid")

    error_class: str = Field(min_length=1)
    """The class the failure was sorted into (dependency, syntax, import, runtime, timeout, ...)."""
    message: str = ""
    """The raw error text (kept short)."""
    signature: str = ""
    """Normalized form of the message; computed from message when left empty."""
    strategy: str = Field(min_length=1)
    """The healing strategy applied."""
    outcome: Literal["fixed", "not_fixed"]
    """Whether the next turn no longer showed the failure."""
    server_name: str = ""
    """Which build, if known."""
    created_at: datetime = Field(default_factory=_now)
    """When recorded (UTC)."""

    @model_validator(mode="after")
    def _fill_signature(self) -> FailureRecord:
        if not self.signature:
            self.signature = error_signature(self.message)
        return self


class StrategyStat(BaseModel):
    """How a healing strategy has fared against one error class."""

    strategy: str
    """Strategy name."""
    attempts: int
    """Times applied."""
    successes: int
    """Times it fixed the failure."""
    rate: float
    """successes / attempts."""
