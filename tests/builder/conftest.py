"""Fixtures for builder tests: local fakes at the wire (an OpenAI-compatible endpoint, PyPI/GitHub/docs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAI
from fake_web import FakeWeb


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A scripted OpenAI-compatible server on 127.0.0.1: .base_url, .script([...]), .calls, .requests."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_web() -> Iterator[FakeWeb]:
    """A fake PyPI JSON API + GitHub search API + doc pages on 127.0.0.1: .url, .add_package/.add_repo/.add_page."""
    server = FakeWeb().start()
    yield server
    server.stop()
