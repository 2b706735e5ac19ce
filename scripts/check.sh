#!/usr/bin/env bash
# The one command for a full check: set up .venv if needed, then format, lint, types, tests.
# Extra arguments go to pytest (e.g. scripts/check.sh -k resume).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

echo "== ruff format"
.venv/bin/ruff format --check .
echo "== ruff check"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== protocol coverage (its own unit tests, 100% of branches)"
.venv/bin/python -m coverage run -m pytest tests/unit/protocol -q -p no:cacheprovider
.venv/bin/python -m coverage report
echo "== pytest"
# Two workers, each taking whole files (module fixtures are built once); the suite waits
# mostly on server subprocesses and sockets. CLOISON_TEST_WORKERS=0 runs it in one process.
.venv/bin/pytest -n "${CLOISON_TEST_WORKERS:-2}" --dist loadfile "$@"
