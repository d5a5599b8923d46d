#!/usr/bin/env bash
# Set up this machine (idempotent) and run the whole test suite, Docker tests included, in
# the project venv that setup.sh installed from uv.lock.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$REPO/scripts/setup.sh"
# shellcheck source=scripts/pyenv.sh
. "$REPO/scripts/pyenv.sh"
use_venv
cd "$REPO"
echo "test: uv lock --check (uv.lock agrees with pyproject.toml)"
"$UV" lock --check || {
    echo "test: ERROR: uv.lock is out of date with pyproject.toml; run 'uv lock' and commit" \
        "uv.lock (docs/dependencies.md)" >&2
    exit 1
}
echo "test: ruff"
"$PHT_VENV/bin/python" -m ruff check .
echo "test: mypy"
"$PHT_VENV/bin/python" -m mypy trains central station train_builder
echo "test: pytest ($PHT_VENV/bin/python)"
# Docker- and PostgreSQL-backed tests must run here, not skip: setup.sh installed both.
PHT_REQUIRE_DOCKER=1 PHT_REQUIRE_POSTGRES=1 "$PHT_VENV/bin/python" -m pytest -ra --durations=30 "$@"
