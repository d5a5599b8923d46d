#!/usr/bin/env bash
# Set up this machine (idempotent) and run the demo: a registry, central and three
# hospital stations on 127.0.0.1, the cohort train over all three, the verified result
# printed next to the pooled figures. Runs in the project venv that setup.sh installed.
# Arguments go to the demo: --serve keeps the network running (the tutorial), --fresh
# starts it anew, --workdir DIR (default ~/.local/state/pht-demo) is where it lives.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$REPO/scripts/setup.sh"
# shellcheck source=scripts/pyenv.sh
. "$REPO/scripts/pyenv.sh"
use_venv
cd "$REPO"
exec "$PHT_VENV/bin/python" -m train_builder.demo "$@"
