"""The gateway's names and run-time policy, without starting anything: exposed names, secrets, the RunSpec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from builder import deploy
from builder.config import load_settings
from builder.draft import ServerDraft
from builder.errors import InputError
from builder.params import deploy_params
from sandbox.policy import SECRET_NAME_PATTERN
from server.gateway.errors import GatewayError
from server.gateway.launch import STATE_ENV, launch_spec, read_secrets_file, resolve_secrets, serve_limits
from server.gateway.mounts import exposed_name, fingerprint, scan
from tests.server.conftest import FIXTURES
from tests.server.gateway_helpers import TOOL_NAME

FILES = {"server.py": "print('hi')\n", "requirements.txt": "mcp==2.3.0\n", "cases.json": '{"cases": []}'}


def tool(name: str) -> dict:
    return {"name": name, "description": f"{name} it", "input_schema": {"type": "object"},
            "annotations": {"readOnlyHint": True}}


@pytest.fixture
def settings(tmp_path):
    return load_settings({"data_dir": str(tmp_path / "data")})


@pytest.fixture
def env_dir(tmp_path) -> Path:
    """A stand-in venv (launch_spec only needs its interpreter to exist)."""
    root = tmp_path / "env"
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    return root


def ship(settings, env_dir, name="weather", tools=("forecast",), **kw) -> deploy.Manifest:
    return deploy.deploy(settings.servers_dir, name, ServerDraft(files=FILES), env_path=env_dir,
                         tools=[tool(t) for t in tools], **kw)


def test_exposed_names_fit_64_characters_and_never_change():
    assert exposed_name("weather", "forecast") == "weather__forecast"
    long = "count_words_and_characters_of_a_text_and_report_every_detail"
    short = exposed_name("text_stats", long)
    assert len(short) == 64 and TOOL_NAME.match(short) and short == exposed_name("text_stats", long)
    assert short != exposed_name("text_stats", long[:-1] + "X")  # a shared prefix does not make them collide
    assert short.startswith("text_stats__count_words") and short[-9] == "_"


def test_colliding_names_are_told_apart_and_listing_starts_nothing(settings, env_dir):
    ship(settings, env_dir, "a__b", ("c",))
    ship(settings, env_dir, "a", ("b__c", "d"))
    table = scan(settings.servers_dir)
    names = [t.name for t in table.tools]
    assert len(names) == len(set(names)) == 3 and "a__b__c" in names and "a__d" in names
    assert {table.tool(n)[1] for n in names} == {"c", "b__c", "d"}
    assert table.tool("a__d")[0].name == "a" and table.tools[0].annotations.read_only_hint is True
    assert not (settings.servers_dir / "a" / "state").exists()  # nothing ran


def test_mount_filter_and_fingerprint_follow_the_servers_directory(settings, env_dir):
    before = fingerprint(settings.servers_dir)
    ship(settings, env_dir, "weather")
    ship(settings, env_dir, "notes", ("add",))
    after = fingerprint(settings.servers_dir)
    assert before != after and list(scan(settings.servers_dir, {"notes"}).mounts) == ["notes"]
    deploy.rollback_server(settings.servers_dir, "weather", "1")  # same version: the generation still moves
    assert fingerprint(settings.servers_dir) != after


def test_secrets_come_from_the_environment_or_the_secrets_file_and_only_those_declared(settings, env_dir, tmp_path):
    m = ship(settings, env_dir, secrets=["WEATHER_API_KEY", "REGION"])
    settings.secrets_file.write_text("# secrets for deployed servers\nexport WEATHER_API_KEY='from-file'\n"
                                     "REGION=eu\nOTHER_TOKEN=never-passed\n")
    assert resolve_secrets(m, settings.secrets_file, {}) == {"WEATHER_API_KEY": "from-file", "REGION": "eu"}
    assert resolve_secrets(m, settings.secrets_file, {"REGION": "us", "GITHUB_TOKEN": "x"})["REGION"] == "us"
    settings.secrets_file.write_text("REGION=eu\n")
    with pytest.raises(GatewayError, match="WEATHER_API_KEY") as e:
        resolve_secrets(m, settings.secrets_file, {})
    assert str(settings.secrets_file) in str(e.value)
    bad = tmp_path / "bad.env"
    bad.write_text("REGION=eu\nthis line is no pair\n")
    with pytest.raises(GatewayError, match=r"bad.env:2"):
        read_secrets_file(bad)


def test_the_runspec_is_validations_policy_plus_the_state_dir_network_and_declared_secrets(settings, env_dir,
                                                                                           monkeypatch):
    monkeypatch.setenv("WEATHER_API_KEY", "k-123")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_never")
    monkeypatch.setenv("UNRELATED", "never")
    m = ship(settings, env_dir, secrets=["WEATHER_API_KEY"], needs_network=True)
    argv, spec = launch_spec(m, settings)
    state = settings.servers_dir / "weather" / "state"
    assert argv == [str(env_dir.parent / "data" / "servers" / "weather" / "1" / ".venv" / "bin" / "python"),
                    str(Path(m.directory) / "server.py")]
    assert spec.workdir == state and state.is_dir() and spec.readonly_paths == (Path(m.directory),)
    assert spec.network is True and spec.limits == serve_limits(settings)
    assert spec.limits.cpu_seconds == 3600 and spec.limits.processes == settings.sandbox_processes
    assert spec.limits.sandbox_memory_mb == settings.sandbox_memory_mb and spec.limits.cgroups
    assert spec.env["WEATHER_API_KEY"] == "k-123" and spec.env[STATE_ENV] == str(state)
    assert [k for k in spec.env if SECRET_NAME_PATTERN.search(k)] == ["WEATHER_API_KEY"]
    assert "UNRELATED" not in spec.env and spec.env["HOME"] == "/tmp/home"
    quiet = ship(settings, env_dir, "notes")
    assert launch_spec(quiet, settings)[1].network is False  # no network unless the manifest says so


def test_deploy_server_inputs_are_checked_field_by_field(tmp_path):
    good = str(FIXTURES / "good_server")
    for kwargs, field in (({"path": good, "name": "Bad-Name"}, "name"),
                          ({"path": str(tmp_path / "none"), "name": "ok"}, "path"),
                          ({"path": str(tmp_path), "name": "ok"}, "path"),
                          ({"path": good, "name": "ok", "secrets": ["OPENAI_API_KEY"]}, "secrets"),
                          ({"path": good, "name": "ok", "secrets": ["not a name"]}, "secrets"),
                          ({"path": good, "name": "ok", "description": "short"}, "description")):
        with pytest.raises(InputError) as e:
            deploy_params(**kwargs)
        assert e.value.field == field, kwargs
    big = tmp_path / "big"
    big.mkdir()
    (big / "server.py").write_text("x = 1\n" * 50_000)
    with pytest.raises(InputError, match="at most"):
        deploy_params(str(big), "big")
    params = deploy_params(good, "goodsrv", secrets=["B_KEY", "A_KEY"])
    assert params["secrets"] == ["A_KEY", "B_KEY"] and params["needs_network"] is False
