"""Expectations of example calls, as the analyst writes them: the matchers test cases support, as models.

Each matcher is its own small model with one required field, so that the JSON Schema of an
expectation reads as what it is, one of five single-key objects, and an invalid one is
answered with the error of the matcher it meant to be. What each matcher accepts (a regex that
compiles, a schema that is a schema) is checked by the cases module itself, so an example
that validates here is a case the sandbox accepts.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


def _checked(model: BaseModel) -> None:
    from sandbox.cases import CasesError, parse_expect

    try:
        parse_expect(model.as_json(), "expect")  # type: ignore[attr-defined]
    except CasesError as e:
        raise ValueError(str(e).removeprefix("expect: ")) from None


class _Matcher(BaseModel):
    # Strict: a JSON Schema does not coerce 1 into true, so neither does the validator.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True, strict=True)

    def as_json(self) -> dict[str, Any]:
        """The expectation in its cases.json form, e.g. {"equals": 3}."""
        return self.model_dump()

    @model_validator(mode="after")
    def _accepted_by_cases(self) -> _Matcher:
        _checked(self)
        return self


class Equals(_Matcher):
    """The value is exactly this JSON value (3 equals 3.0; true is not 1)."""

    model_config = ConfigDict(title="equals")
    equals: Any = Field(description="The exact JSON value: for results that are exact (counts, fixed strings).")


class Contains(_Matcher):
    """The value contains this string (searched in the value's JSON when it is not a string)."""

    model_config = ConfigDict(title="contains")
    contains: str = Field(description="A substring: for long text where only part is certain.")


class Matches(_Matcher):
    """A regular expression is found in the value (searched in the value's JSON when it is not a string)."""

    model_config = ConfigDict(title="matches")
    matches: str = Field(description="A Python regular expression, searched: for floats, dates, random ids.",
                         json_schema_extra={"format": "regex"})


class Satisfies(_Matcher):
    """The value satisfies a JSON schema."""

    model_config = ConfigDict(title="schema")
    schema_: dict[str, Any] = Field(alias="schema", description=(
        "A JSON schema (draft 2020-12) of the value: for shapes whose content varies (an image's "
        "base64, a list of rows), e.g. {\"type\": \"array\", \"minItems\": 1}."))


class Fails(_Matcher):
    """The call fails: a tool with an isError result, a resource read or prompt get with an error."""

    model_config = ConfigDict(title="error")
    error: bool | str = Field(description="true: the call must fail; a string: it fails and its error message "
                                          "contains the string; false: it must succeed.")


def _matcher_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return "schema" if key == "schema_" else key
    return None


Expectation = Annotated[
    Annotated[Equals, Tag("equals")] | Annotated[Contains, Tag("contains")] | Annotated[Matches, Tag("matches")]
    | Annotated[Satisfies, Tag("schema")] | Annotated[Fails, Tag("error")],
    Discriminator(_matcher_kind, custom_error_type="expectation",
                  custom_error_message="an expectation is an object with exactly one of equals, contains, matches, "
                                       "schema or error"),
    Field(description="What the call must give: exactly one of equals, contains, matches, schema or error."),
]
"""What an example expects: one of the five matchers of test cases."""


def fixture_names(arguments: Any) -> set[str]:
    """Names of the fixtures an example's arguments refer to ({"$fixture": name}), at any depth."""
    if isinstance(arguments, dict):
        if isinstance(arguments.get("$fixture"), str):
            return {arguments["$fixture"]}
        return {n for v in arguments.values() for n in fixture_names(v)}
    if isinstance(arguments, list):
        return {n for v in arguments for n in fixture_names(v)}
    return set()
