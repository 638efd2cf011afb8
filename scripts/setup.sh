#!/usr/bin/env bash
# Installs everything mcp-foundry needs into ./.venv (and bubblewrap from Debian's packages when missing).
# Safe to run again: each step is skipped when already done. Pass --test to add the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n apt-get update -qq && sudo -n apt-get install -y -qq bubblewrap >/dev/null \
            || echo "setup: could not install bubblewrap; the sandbox falls back to the plain process backend" >&2
    fi
fi

# The tests of the shared job store start a throwaway PostgreSQL (initdb + pg_ctl): only --test installs it, and
# without creating or starting a cluster of its own. The single-user install needs no PostgreSQL.
if [ -n "$extras" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq postgresql-common >/dev/null
        sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
        apt-get install -y -qq postgresql >/dev/null
    else
        echo "setup: PostgreSQL is not installed and this is not root; its tests will be skipped" >&2
    fi
fi

py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# The CPU build of torch first, pinned: an unpinned torch (pulled in by sentence-transformers) is a multi-GB GPU build.
.venv/bin/python -c "import torch" 2>/dev/null \
    || .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".${extras}" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import server.cli, torch, mcp" # fail here, not later, when an install step did not work
