"""The container files: compose.yaml parses and runs only commands the CLI has; `doctor` says the isolation in force.

No Docker engine runs here: scripts/compose-smoke.sh is what a machine with one runs.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.config import ENV_VARS
from server.cli import _parser
from tests.server.conftest import FOUNDRY, ROOT, foundry_env

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
FOUNDRY_SERVICES = {name: s for name, s in COMPOSE["services"].items() if s.get("image") == "mcp-foundry:local"}


def _exec_form(instruction: str) -> list[str]:
    """The JSON array of a Dockerfile ENTRYPOINT or CMD line."""
    line = next(x for x in DOCKERFILE.splitlines() if x.startswith(f"{instruction} "))
    return json.loads(line.removeprefix(f"{instruction} "))


def test_compose_has_postgres_one_api_front_end_and_workers_sharing_the_store():
    assert set(COMPOSE["services"]) == {"postgres", "api", "worker"}
    assert COMPOSE["services"]["postgres"]["image"].startswith("postgres:15")
    assert set(FOUNDRY_SERVICES) == {"api", "worker"}
    api, worker = FOUNDRY_SERVICES["api"], FOUNDRY_SERVICES["worker"]
    for service in (api, worker):
        env = service["environment"]
        assert env["MCP_FOUNDRY_DB_URL"].startswith("postgresql://") and "@postgres:5432/" in env["MCP_FOUNDRY_DB_URL"]
        assert env["MCP_FOUNDRY_KNOWLEDGE_URI"].startswith("/shared/")
        assert env["MCP_FOUNDRY_SERVERS_DIR"].startswith("/shared/")
        assert "shared:/shared" in service["volumes"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(service["security_opt"])
        assert "privileged" not in service and "/var/run/docker.sock" not in json.dumps(service)
    assert "MCP_FOUNDRY_HTTP_TOKEN" in api["environment"] and api["ports"][0].startswith("127.0.0.1:")
    assert "replicas" in worker["deploy"]


def test_every_command_compose_and_the_image_run_exists_in_the_cli():
    entrypoint = _exec_form("ENTRYPOINT")
    assert entrypoint == ["mcp-foundry"]
    commands = [_exec_form("CMD")] + [s["command"] for s in FOUNDRY_SERVICES.values()]
    parser = _parser()
    for argv in commands:
        args = parser.parse_args(argv)  # exits (SystemExit) on a command or flag the CLI does not have
        assert args.cmd in ("serve", "worker"), argv
    api = parser.parse_args(FOUNDRY_SERVICES["api"]["command"])
    assert api.cmd == "serve" and api.http == "0.0.0.0:8765" and api.max_jobs == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-jobs", "0", "serve", "--no-such-flag"])  # the check can fail


def test_compose_sets_only_settings_the_foundry_knows():
    text = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"\b(MCP_FOUNDRY_[A-Z_]+)\b", text))
    passed = {v for s in FOUNDRY_SERVICES.values() for v in s["environment"]}
    # Read by compose itself (the port and the number of workers), not by the foundry.
    compose_only = {"MCP_FOUNDRY_PORT", "MCP_FOUNDRY_WORKERS"}
    assert used - passed <= compose_only | {"MCP_FOUNDRY_HTTP_TOKEN"}
    assert {"MCP_FOUNDRY_DB_URL", "MCP_FOUNDRY_SERVERS_DIR"} <= passed  # the shared job store, the shared servers
    assert passed <= set(ENV_VARS.values()), passed - set(ENV_VARS.values())


def test_the_smoke_script_validates_over_rest_and_takes_everything_down():
    script = (ROOT / "scripts" / "compose-smoke.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "compose-smoke.sh")]).returncode == 0
    for needed in ("up --detach --build --wait", "/api/v1/validate", "/api/v1/build/${id}/status",
                   "/api/v1/build/${id}/result", "/metrics", "down --volumes"):
        assert needed in script, needed
    runs = re.findall(r"mcp-foundry ([a-z]+)", script.replace("mcp-foundry-smoke", ""))
    assert runs and all(_parser().parse_args([cmd]).cmd == cmd for cmd in runs)


def test_doctor_says_where_it_runs_and_the_isolation_in_force(tmp_path):
    env = foundry_env(tmp_path / "data")
    plain = subprocess.run([*FOUNDRY, "--sandbox", "process", "doctor"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    section = plain.stdout.split("where it runs:\n", 1)[1].split("sandbox limits", 1)[0]
    in_docker = Path("/.dockerenv").exists()
    assert ("in a docker container" if in_docker else "not in a container") in section
    assert "in force: NO isolation (plain processes)" in section
    if in_docker:  # how to get real isolation here
        assert "seccomp=unconfined, apparmor=unconfined and systempaths=unconfined" in section
