#!/usr/bin/env bash
# Installs mcp-foundry with its test tools, then runs the whole test suite (pytest's exit code is kept as is:
# 5, "no tests ran", fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
