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
    """Validation reports of three broken fixture servers, run for real in the sandbox."""
    async def run() -> dict[str, object]:
        backend, envs, out = get_backend(), EnvManager(ENV_CACHE), {}
        for name in ("wrong_result_server", "missing_dependency_server", "import_error_server"):
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
    assert learned.strategy == "swap-package" and learned.alternatives == ["repin"]
    assert learned.score == pytest.approx(4 / 5) and learned.instruction.endswith("PyPI facts: ...")
    # Within one build a strategy that was already applied waits until the others have had a turn.
    assert heal.plan(dep, store.strategy_stats, {"dependency": ["swap-package"]}).strategy == "repin"
