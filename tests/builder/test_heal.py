"""Healing: failures from real validation runs and real Reason checks are classified, and strategies are ranked
by their recorded success rate in a real knowledge repository."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio
import pytest

from builder import heal
from builder.draft import ServerDraft
from builder.reason import lint, parse
from knowledge.embed import HashingEmbedder
from knowledge.models import FailureRecord
from knowledge.store import KnowledgeStore
from sandbox.backends import get_backend
from sandbox.env import EnvManager
from sandbox.validate import ValidationTarget, requirements_of, validate_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"


@pytest.fixture(scope="module")
def validated() -> dict[str, object]:
    """Validation reports of four broken fixture servers, run for real in the sandbox."""
    async def run() -> dict[str, object]:
        backend, envs, out = get_backend(), EnvManager(ENV_CACHE), {}
        for name in ("wrong_result_server", "missing_dependency_server", "import_error_server",
                     "missing_import_server"):
            env = await envs.ensure(requirements_of(FIXTURES / name))
            out[name] = await validate_server(ValidationTarget(directory=FIXTURES / name), backend=backend,
                                              env=env, cases=None)
        return out
    return anyio.run(run)


@pytest.mark.parametrize("fixture, expected", [
    ("wrong_result_server", "assertion"),
    ("missing_dependency_server", "dependency"),
    ("import_error_server", "import"),
])
def test_validation_failures_are_classified(validated, fixture, expected):
    failures = heal.from_report(validated[fixture])
    assert failures and heal.primary_class(failures) == expected
    assert all(f.source == "validation" and f.message for f in failures)


def test_reason_findings_block_before_anything_runs(tmp_path):
    files = {p.name: p.read_text() for p in (FIXTURES / "import_error_server").iterdir()}
    draft = ServerDraft(files=files)
    draft.write_to(tmp_path)
    found = lint(draft, tmp_path)
    assert any(f.blocking and f.error_class == "protocol" and "fastmcp" in f.message for f in found)
    broken = ServerDraft(files=dict(files, **{"server.py": "def f(:\n"}))
    [syntax] = parse(broken)
    assert syntax.blocking and syntax.error_class == "syntax" and syntax.where == "server.py:1"


def test_earliest_stage_class_comes_first_and_compatibility_is_recognised():
    mk = heal.ClassifiedFailure
    failures = [mk(error_class="assertion", message="wrong", source="validation"),
                mk(error_class="syntax", message="bad", source="reason")]
    assert heal.primary_class(failures) == "syntax"
    assert heal.refine_class("dependency", "ERROR: Package 'x' requires a different Python: 3.11 not in '>=3.12'"
                             " (Requires-Python)") == "compatibility"
    assert heal.refine_class("dependency", "No solution found: x==9.9 does not exist") == "dependency"


@pytest.fixture
def store(tmp_path) -> KnowledgeStore:
    return KnowledgeStore.open(str(tmp_path / "kb"), embedder=HashingEmbedder())


def record(store: KnowledgeStore, strategy: str, fixed: int, not_fixed: int) -> None:
    for outcome, n in (("fixed", fixed), ("not_fixed", not_fixed)):
        for _ in range(n):
            store.record_failure(FailureRecord(error_class="dependency", message="x==1.0 not found",
                                               strategy=strategy, outcome=outcome))


def test_strategy_order_follows_the_recorded_success_rate(store):
    dep = [heal.ClassifiedFailure(error_class="dependency", message="no such package", source="reason")]
    fresh = heal.plan(dep, store.strategy_stats, {})
    assert (fresh.strategy, fresh.score) == ("repin", 0.5)  # nothing recorded: the default order
    record(store, "repin", fixed=0, not_fixed=3)
    record(store, "swap-package", fixed=3, not_fixed=0)
    learned = heal.plan(dep, store.strategy_stats, {}, context="PyPI facts: ...")
    assert learned.strategy == "swap-package" and learned.alternatives[-1] == "repin"  # untried ones in between
    assert learned.score == pytest.approx(4 / 5) and learned.instruction.endswith("PyPI facts: ...")
    # Within one build a strategy that was already applied waits until the others have had a turn.
    again = heal.plan(dep, store.strategy_stats, {"dependency": ["swap-package"]})
    assert again.strategy != "swap-package" and again.alternatives[-1] == "swap-package"


# ---- the strategy must fit the failure: the two mislabels of a measured run -----------------------------------------

def _files(name: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in (FIXTURES / name).iterdir() if p.is_file()}


def _favouring(store: KnowledgeStore, error_class: str, strategy: str) -> None:
    """A record in which `strategy` has healed its class every time (so the past rate alone would pick it)."""
    for _ in range(5):
        store.record_failure(FailureRecord(error_class=error_class, message="earlier", strategy=strategy,
                                           outcome="fixed"))


def test_a_missing_import_found_by_the_validator_is_healed_by_adding_the_import(validated, store):
    _favouring(store, "runtime", "defensive-rewrite")  # the measured mislabel
    failures = heal.sharpen(heal.from_report(validated["missing_import_server"]), _files("missing_import_server"))
    assert [(f.error_class, f.kind) for f in failures] == [("runtime", "undefined-name")]
    chosen = heal.plan(failures, store.strategy_stats, {})
    assert (chosen.strategy, chosen.kind) == ("add-missing-import", "undefined-name")
    assert "defensive-rewrite" not in chosen.alternatives  # never: it does not fit a missing import
    # Once it was tried, the general fix comes next, still not the defensive rewrite.
    assert heal.plan(failures, store.strategy_stats, {"runtime": ["add-missing-import"]}).strategy == "targeted-fix"


def test_a_missing_import_found_by_lint_names_the_line_to_fix(tmp_path, store):
    _favouring(store, "runtime", "defensive-rewrite")
    files = _files("missing_import_server")
    files["server.py"] = files["server.py"].replace("  # noqa: F821 - the bug under test", "")
    draft = ServerDraft(files=files)
    found = [f for f in lint(draft, draft.write_to(tmp_path / "d")) if f.blocking]
    failures = heal.sharpen([heal.ClassifiedFailure(error_class=f.error_class, message=f.message, source="reason",
                                                    where=f.where) for f in found], files)
    chosen = heal.plan(failures, store.strategy_stats, {})
    line = 1 + files["server.py"].splitlines().index("    return json.dumps(text)")
    assert chosen.strategy == "add-missing-import" and f"server.py:{line}" in chosen.instruction


@pytest.fixture
def vetted(fake_web, tmp_path):
    """Real vetting of a requirements list against a PyPI at the wire that knows mcp and requests only."""
    from builder.reason import vet
    from builder.research import Researcher

    fake_web.add_package("mcp", {"2.3.0": "2026-06-01T00:00:00Z"} | {f"1.{i}.0": "2025-01-01T00:00:00Z"
                                                                        for i in range(9)}, summary="MCP SDK")
    fake_web.add_package("requests", {f"2.{i}.0": "2020-01-01T00:00:00Z" for i in range(33)},
                         summary="Python HTTP for Humans.")
    pypi = Researcher(tmp_path / "cache", pypi_url=fake_web.url, github_api_url=fake_web.url).pypi

    def run(requirements: list[str]) -> list[heal.ClassifiedFailure]:
        findings, _ = anyio.run(vet, requirements, pypi)
        return [heal.ClassifiedFailure(error_class=f.error_class, message=f.message, source="reason", where=f.where)
                for f in findings if f.blocking]

    return run


SERVER_USING = ("from mcp.server.mcpserver import MCPServer\n{imports}\nmcp = MCPServer('s')\n"
                "if __name__ == '__main__':\n    mcp.run()\n")


@pytest.mark.parametrize("imports, kind, strategy", [
    ("", "unused-package", "remove-unused-dependency"),  # the measured mislabel: it was called repin
    ("import requests", "misspelt-package", "fix-package-name"),
    ("import reqeusts", "unknown-package", "swap-package"),
])
def test_a_typo_squatted_package_is_healed_by_what_the_code_does_with_it(vetted, store, imports, kind, strategy):
    _favouring(store, "dependency", "repin")
    failures = vetted(["mcp==2.3.0", "reqeusts==2.31.0"])
    assert failures and {f.where for f in failures} == {"reqeusts"}
    files = {"server.py": SERVER_USING.format(imports=imports), "requirements.txt": "mcp==2.3.0\nreqeusts==2.31.0\n"}
    chosen = heal.plan(heal.sharpen(failures, files), store.strategy_stats, {})
    assert (chosen.kind, chosen.strategy) == (kind, strategy)
    assert "repin" not in [chosen.strategy, *chosen.alternatives]
    if strategy == "remove-unused-dependency":
        assert "requirements.txt lists reqeusts, which no file imports" in chosen.instruction


def test_a_version_that_does_not_exist_is_still_repinned(store):
    failure = heal.ClassifiedFailure(error_class="dependency", source="validation", where="requirements.txt",
                                     message="No solution found when resolving dependencies: Because there is no "
                                             "version of requests==9.9.9 and you require requests==9.9.9, ...")
    chosen = heal.plan(heal.sharpen([failure], {"server.py": "import requests\n"}), store.strategy_stats, {})
    assert (chosen.kind, chosen.strategy) == ("bad-version", "repin")
