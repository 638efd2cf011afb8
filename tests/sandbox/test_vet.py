"""Dependency vetting rules: each fires on its case, and benign pinned popular dependencies pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.vet import PackageMeta, blocking, slopsquat_base, typosquat_target, vet_dependencies

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=3000)


def established(name: str) -> PackageMeta:
    return PackageMeta(
        name=name, versions=40, first_release=OLD, latest_release=NOW - timedelta(days=20),
        summary=f"The well known {name} library for Python",
    )  # fmt: skip


def rules(findings, package=None) -> set[tuple[str, str]]:
    return {(f.rule, f.severity) for f in findings if package is None or f.package == package}


def test_benign_pinned_popular_dependencies_pass():
    reqs = ["requests==2.32.3", "pydantic==2.8.2", "httpx==0.27.0", "PyYAML==6.0.1", "scikit_learn==1.5.0"]
    meta = {n: established(n) for n in ("requests", "pydantic", "httpx", "pyyaml", "scikit-learn")}
    assert vet_dependencies(reqs, meta, now=NOW) == []


def test_missing_on_pypi_is_blocking():
    findings = vet_dependencies(["pdfmagic-extractor==1.0"], {"pdfmagic-extractor": None}, now=NOW)
    assert rules(findings) == {("missing", "blocking")}
    assert "does not exist on PyPI" in findings[0].message
    not_exists = {"ghost": PackageMeta(name="ghost", exists=False)}
    assert rules(vet_dependencies(["ghost==1"], not_exists, now=NOW)) == {("missing", "blocking")}


@pytest.mark.parametrize("req", ["requests", "requests>=2", "requests~=2.31", "requests==2.*"])
def test_unpinned_is_a_warning(req):
    findings = vet_dependencies([req], {"requests": established("requests")}, now=NOW)
    assert rules(findings) == {("unpinned", "warning")}
    assert "pin an exact version" in findings[0].message


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("reqeusts", "requests"),  # transposition
        ("requestss", "requests"),  # insertion
        ("python-requests", "requests"),  # prefix trick
        ("requests2", "requests"),  # digit suffix
        ("reque5ts", "requests"),  # homoglyph
        ("py_yaml", "pyyaml"),  # separator
        ("djanga", "django"),
        ("matplotlip", "matplotlib"),
    ],
)
def test_typosquats_are_flagged(name, target):
    assert typosquat_target(name) == target
    fresh = PackageMeta(name=name, versions=1, first_release=NOW - timedelta(days=3), summary="x")
    findings = vet_dependencies([f"{name}==0.1"], {name: fresh}, now=NOW)
    squat = [f for f in findings if f.rule == "typosquat"]
    assert squat and squat[0].severity == "blocking" and f"did you mean {target}" in squat[0].message


def test_typosquat_of_an_established_lookalike_is_only_a_warning():
    findings = vet_dependencies(["pyaml==24.7.0"], {"pyaml": established("pyaml")}, now=NOW)
    assert rules(findings) == {("typosquat", "warning")}


def test_short_and_popular_names_are_not_typosquats():
    for name in ("httpx", "anyio", "boto", "bs4", "rich", "typer", "pytest-cov", "fastmcp"):
        assert typosquat_target(name) is None, name


@pytest.mark.parametrize(("name", "base"), [("requests-python", "requests"), ("stripe-sdk", "stripe"),
                                            ("pandas-tools", "pandas"), ("openai-client", "openai")])  # fmt: skip
def test_slopsquat_missing_or_new_is_blocking(name, base):
    assert slopsquat_base(name) == base
    assert ("slopsquat", "blocking") in rules(vet_dependencies([f"{name}==1.0"], {name: None}, now=NOW))
    fresh = PackageMeta(
        name=name, versions=3, first_release=NOW - timedelta(days=2), summary="A helpful toolkit x"
    )
    assert ("slopsquat", "blocking") in rules(vet_dependencies([f"{name}==1.0"], {name: fresh}, now=NOW))


def test_slop_shaped_name_that_is_established_passes():
    assert (
        vet_dependencies(["pandas-tools==2.0"], {"pandas-tools": established("pandas-tools")}, now=NOW) == []
    )


def test_brand_new_and_near_empty_are_flagged():
    new = PackageMeta(
        name="shinypdf", versions=4, first_release=NOW - timedelta(days=5), summary="Shiny PDF tools"
    )
    findings = vet_dependencies(["shinypdf==0.4"], {"shinypdf": new}, now=NOW)
    assert rules(findings) == {("new-package", "warning")}
    assert "5 day(s) ago" in findings[0].message

    empty = PackageMeta(name="pdfthing", versions=1, first_release=OLD, summary="todo")
    assert rules(vet_dependencies(["pdfthing==0.0.1"], {"pdfthing": empty}, now=NOW)) == {
        ("near-empty", "warning")
    }


def test_invalid_direct_url_and_unverified():
    findings = vet_dependencies(
        ["not a requirement!!", "evil @ https://example.invalid/evil.tar.gz", "tabulate==0.9.0"], {}, now=NOW
    )
    assert rules(findings) == {
        ("invalid-requirement", "blocking"),
        ("direct-url", "blocking"),
        ("unverified", "warning"),
    }
    assert [f.package for f in blocking(findings)] == ["not a requirement!!", "evil"]


def test_naive_datetimes_and_name_normalisation():
    meta = {
        "Shiny_PDF": PackageMeta(
            name="Shiny_PDF", versions=2, first_release=datetime(2026, 5, 30), summary="s" * 30
        )
    }
    findings = vet_dependencies(["shiny-pdf==1.0"], meta, now=datetime(2026, 6, 1))
    assert rules(findings) == {("new-package", "warning")}
