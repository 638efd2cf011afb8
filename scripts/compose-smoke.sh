#!/usr/bin/env bash
# On a machine with a Docker engine and the compose plugin: build the image, bring compose.yaml up (PostgreSQL,
# the API and the workers), run one validation over REST to its end, check it passed and that /metrics counts it,
# then take everything down (volumes too). Exit 0 when all of that worked.
#
#   bash scripts/compose-smoke.sh            # MCP_FOUNDRY_PORT (default 8765) and MCP_FOUNDRY_WORKERS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

export MCP_FOUNDRY_HTTP_TOKEN=${MCP_FOUNDRY_HTTP_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}
port=${MCP_FOUNDRY_PORT:-8765}
base="http://127.0.0.1:${port}"
project="mcp-foundry-smoke-$$"
compose() { docker compose -p "$project" "$@"; }
say() { echo "compose-smoke: $*" >&2; }
api() { curl -fsS --max-time 30 -H "Authorization: Bearer ${MCP_FOUNDRY_HTTP_TOKEN}" "$@"; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

trap 'say "taking it down"; compose down --volumes --remove-orphans >/dev/null 2>&1 || true' EXIT

say "building and starting (project ${project})"
compose up --detach --build --wait --wait-timeout 600

say "the sandbox in force in a worker:"
compose exec -T worker mcp-foundry doctor | sed -n '/^where it runs:/,/^sandbox limits/p' >&2

# A starter server that ships inside the image, at the same path in every container.
server=$(compose exec -T api python -c \
    "import pathlib, knowledge.starters as s; print(pathlib.Path(s.__file__).parent / 'text_statistics')" | tr -d '\r')
say "validating ${server} over REST"
id=$(api -H 'Content-Type: application/json' -d "{\"path\": \"${server}\"}" "${base}/api/v1/validate" | field "['build_id']")

state=queued
for _ in $(seq 1 300); do
    state=$(api "${base}/api/v1/build/${id}/status" | field "['status']")
    case "$state" in succeeded|failed|cancelled|interrupted) break ;; esac
    sleep 2
done
result=$(api "${base}/api/v1/build/${id}/result")
say "job ${id}: ${state}, worker $(api "${base}/api/v1/build/${id}/status" | field "['worker']")"
echo "$result" | field "['test_results']" >&2
[ "$(echo "$result" | field "['success']")" = "True" ] || { say "FAILED: $(echo "$result" | field "['error_message']")"; exit 1; }

api "${base}/metrics" | grep -q 'mcp_build_requests_total{kind="validate",priority="normal",status="succeeded"} 1.0' \
    || { say "FAILED: /metrics does not count the validation"; exit 1; }
say "passed: one validation over REST on ${MCP_FOUNDRY_WORKERS:-2} worker(s)"
