#!/usr/bin/env bash
# The project's checks, in the order a reviewer reads them: lint, types, the fast tier, the slow tier.
# Run from a venv with '.[test]' installed (the README's test command does that first); .ci/run runs it.
# Both pytest tiers run beside a throwaway PostgreSQL (scripts/postgres.sh sets
# OVI_GATEWAY_TEST_DATABASE_URL), so the storage contract tests cover both backends.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OVI_GATEWAY_TEST_DATABASE_URL:-}" ]; then
    exec scripts/postgres.sh "$0" "$@"
fi
py=.venv/bin/python
[ -x "$py" ] || py=python3

"$py" -m ruff check .
# Types: mypy --strict over gateway/ and providers/ (configured in pyproject.toml [tool.mypy]).
"$py" -m mypy
# The fast, deterministic tier (virtual time, in-process emulator): under 3 minutes on 2 cores.
"$py" -m pytest
# The slow tier: real time and other processes (kills, official SDKs, loopback servers, PostgreSQL).
"$py" -m pytest -m slow
