"""Every starter really works: installed from its pinned requirements with uv, driven over real MCP stdio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from kb_case_runner import run_starter

from knowledge.seed import starter_case
from knowledge.starters import list_starters

UV = str(Path(sys.executable).with_name("uv"))
STARTERS = list_starters()


def test_library_has_at_least_12_starters_with_3_cases_and_an_error_case():
    import json

    assert len(STARTERS) >= 12
    for s in STARTERS:
        cases = json.loads((s.directory / "cases.json").read_text())["cases"]
        assert len(cases) >= 3, s.name
        assert any("error" in c["expect"] for c in cases), s.name
        assert all(len(c["expect"]) == 1 for c in cases), s.name
        assert all("==" in r for r in s.requirements), f"{s.name}: unpinned {s.requirements}"
        assert "mcp==2.3.0" in s.requirements


def test_tools_read_by_ast_match_the_server(tmp_path_factory):
    """Checked in the live run below too; here: every starter declares tools with descriptions and annotations."""
    for s in STARTERS:
        case = starter_case(s)
        assert case.tools, s.name
        assert all(t.description and t.annotations.get("read_only_hint") for t in case.tools), s.name


@pytest.fixture(scope="module")
def venvs(tmp_path_factory) -> dict[tuple[str, ...], str]:
    """One uv venv per distinct requirements set; returns requirements -> python path."""
    out = {}
    for i, reqs in enumerate(sorted({s.requirements for s in STARTERS})):
        target = tmp_path_factory.mktemp(f"venv{i}")
        subprocess.run([UV, "venv", "-q", "-p", sys.executable, str(target)], check=True)
        python = str(target / "bin" / "python")
        subprocess.run([UV, "pip", "install", "-q", "-p", python, *reqs], check=True, timeout=300)
        out[reqs] = python
    return out


def test_every_starter_passes_its_cases_over_stdio(venvs):
    results: dict[str, tuple[list[str], list[str]]] = {}

    async def run_one(starter) -> None:
        results[starter.name] = await run_starter(starter.directory, venvs[starter.requirements])

    async def main() -> None:
        limiter = anyio.CapacityLimiter(4)

        async def limited(starter) -> None:
            async with limiter:
                await run_one(starter)

        async with anyio.create_task_group() as tg:
            for starter in STARTERS:
                tg.start_soon(limited, starter)

    anyio.run(main)
    failures = [f for _, fails in results.values() for f in fails]
    assert failures == []
    for s in STARTERS:
        listed = results[s.name][0]
        assert sorted(listed) == sorted(t.name for t in starter_case(s).tools), s.name
