"""The README's main job (seed, then search) and the repository through MCP: search_repository, the case resource."""

from __future__ import annotations

import json
import subprocess

import anyio
import pytest

from tests.proctree import stop_workers
from tests.server.conftest import FOUNDRY, ROOT, foundry_env, stdio_foundry


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("seeded")
    run = subprocess.run([*FOUNDRY, "library", "seed"], cwd=ROOT, env=foundry_env(data_dir), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stored: 12" in run.stdout and "failed: 0" in run.stdout
    assert "text_statistics: stored" in run.stderr  # progress was shown
    yield data_dir
    stop_workers(data_dir)


def test_seeding_again_stores_nothing_new_and_cli_search_finds_by_meaning(seeded):
    again = subprocess.run([*FOUNDRY, "library", "seed"], cwd=ROOT, env=foundry_env(seeded), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "stored: 0" in again.stdout and "skipped: 12" in again.stdout
    found = subprocess.run([*FOUNDRY, "search", "how long will it take to read my essay", "--json"], cwd=ROOT,
                           env=foundry_env(seeded), capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["case"]["server_name"] == "text-statistics"
    assert set(hits[0]["components"]) == {"vector", "fts", "features", "dependencies"} and hits[0]["reason"]


def test_search_repository_tool_and_case_resource(seeded):
    async def main():
        async with stdio_foundry(seeded) as client:
            res = await client.call_tool("search_repository", {"query": "pull the text out of a pdf file", "limit": 3})
            assert not res.is_error, res.content
            hits = res.structured_content["hits"]
            assert len(hits) == 3 and hits[0]["server_name"] == "pdf-text"
            assert "pypdf" in " ".join(hits[0]["dependencies"])
            case = json.loads((await client.read_resource(hits[0]["resource"])).contents[0].text)
            assert case["id"] == hits[0]["case_id"] and "server.py" in case["files"]
            filtered = await client.call_tool("search_repository", {"query": "convert things",
                                                                    "filters": {"dependency": "markdown"}})
            assert [h["server_name"] for h in filtered.structured_content["hits"]] == ["markdown-html"]
            bad = await client.call_tool("search_repository", {"query": "x y", "filters": {"colour": "red"}})
            assert bad.is_error and "filters.colour" in bad.content[0].text and "the keys dependency" in bad.content[0].text
            wrong = await client.call_tool("search_repository", {"query": "x y", "filters": {"source": "web"}})
            assert wrong.is_error and "source: Only cases from this source" in wrong.content[0].text
            short = await client.call_tool("search_repository", {"query": "x"})
            assert short.is_error and "query" in short.content[0].text

    anyio.run(main)
