"""The LLM settings as the command line shows and checks them."""

from __future__ import annotations

import subprocess

from tests.server.conftest import FOUNDRY, ROOT, foundry_env


def test_doctor_shows_the_llm_timeout_and_a_bad_one_is_refused_naming_the_variable(tmp_path):
    llm = {"MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1", "MCP_FOUNDRY_LLM_MODEL": "qwen"}
    env = foundry_env(tmp_path / "data", **llm, MCP_FOUNDRY_LLM_TIMEOUT="900")
    doctor = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 0, doctor.stderr
    assert "LLM provider:  openai (fails after 900 s without a token)" in doctor.stdout
    env["MCP_FOUNDRY_LLM_TIMEOUT"] = "ten minutes"
    bad = subprocess.run([*FOUNDRY, "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "MCP_FOUNDRY_LLM_TIMEOUT: 'ten minutes'" in bad.stderr
    assert "at most 86400" in bad.stderr
