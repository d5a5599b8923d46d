#!/usr/bin/env bash
# Set up this machine (idempotent) and run the whole test suite, Docker tests included.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$REPO/scripts/setup.sh"
cd "$REPO"
PYTHON=${PYTHON:-python3}
echo "test: ruff"
"$PYTHON" -m ruff check .
echo "test: mypy"
"$PYTHON" -m mypy trains central station train_builder
echo "test: pytest"
# Docker- and PostgreSQL-backed tests must run here, not skip: setup.sh installed both.
PHT_REQUIRE_DOCKER=1 PHT_REQUIRE_POSTGRES=1 "$PYTHON" -m pytest -ra "$@"
