"""Seeding: starters are validated in the real sandbox, only passing ones are stored, and re-seeding is idempotent."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from builder.config import Settings
from builder.errors import InputError
from builder.jobs import JobState
from builder.seed import SeedReport, starters_from
from builder.service import Foundry
from knowledge.models import SearchFilters
from knowledge.starters import STARTERS_DIR

ENV_CACHE = Path(tempfile.gettempdir()) / f"mcp-foundry-test-envs-{os.getuid()}"


@pytest.fixture
def library(tmp_path) -> Path:
    """Two real starters and one whose case expects a wrong answer."""
    root = tmp_path / "starters"
    for name in ("text_statistics", "safe_calculator"):
        shutil.copytree(STARTERS_DIR / name, root / name)
    broken = root / "broken_stats"
    shutil.copytree(STARTERS_DIR / "text_statistics", broken)
    cases = json.loads((broken / "cases.json").read_text())
    cases["cases"][1]["expect"] = {"equals": [{"word": "apple", "count": 99}]}
    (broken / "cases.json").write_text(json.dumps(cases))
    return root


@pytest.fixture
def foundry(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    f = Foundry(Settings(data_dir=tmp_path / "data", env_cache_dir=ENV_CACHE))
    yield f
    f.store.close()


async def seed(foundry: Foundry, params: dict) -> tuple[JobState, SeedReport]:
    async with foundry.runner():
        job = await foundry.queue.wait(foundry.queue.submit("seed", params).id, 180)
    assert job.result is not None, job.error
    return job.state, SeedReport.model_validate(job.result)


def starter_cases(foundry: Foundry) -> list:
    return foundry.knowledge.list_cases(SearchFilters(source="starter"))


@pytest.mark.anyio
async def test_seed_stores_passing_starters_reports_failing_ones_and_is_idempotent(foundry, library):
    state, report = await seed(foundry, {"directory": str(library)})
    status = {s.name: s.status for s in report.starters}
    assert status == {"broken_stats": "failed", "safe_calculator": "stored", "text_statistics": "stored"}
    assert state == JobState.failed and "broken_stats" in report.error  # a broken library is not a success
    failed = next(s for s in report.starters if s.name == "broken_stats")
    assert "[assertion]" in failed.reason and failed.validation.verdict == "fail"
    stored = starter_cases(foundry)
    assert sorted(c.server_name for c in stored) == ["safe-calculator", "text-statistics"]
    stats = next(c for c in stored if c.server_name == "text-statistics")
    assert {t.name for t in stats.tools} >= {"text_statistics", "word_frequencies"} and "server.py" in stats.files
    assert stats.validation_summary.total == 4 and stats.validation_summary.passed == 4

    _, again = await seed(foundry, {"directory": str(library), "only": ["text_statistics", "safe_calculator"]})
    assert [s.status for s in again.starters] == ["skipped", "skipped"] and again.ok
    assert [c.id for c in starter_cases(foundry)] == [c.id for c in stored]

    server = library / "text_statistics" / "server.py"
    server.write_text(server.read_text() + "\n# a changed starter is validated and stored again\n")
    _, changed = await seed(foundry, {"directory": str(library), "only": ["text_statistics"]})
    assert changed.starters[0].status == "stored"
    now = starter_cases(foundry)
    assert len(now) == 2 and "changed starter" in next(c for c in now if c.server_name == "text-statistics"
                                                        ).files["server.py"]


def test_unknown_starters_are_input_errors(tmp_path):
    with pytest.raises(InputError) as e:
        starters_from({"only": ["no_such_starter"]})
    assert e.value.field == "only" and "text_statistics" in str(e.value)
    with pytest.raises(InputError) as e:
        starters_from({"directory": str(tmp_path / "missing")})
    assert e.value.field == "directory"
