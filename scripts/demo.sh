#!/usr/bin/env bash
# Set up this machine (idempotent) and run the demo: a registry, central and three
# hospital stations on 127.0.0.1, the cohort train over all three, the verified result
# printed next to the pooled figures.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$REPO/scripts/setup.sh"
cd "$REPO"
exec "${PYTHON:-python3}" -m train_builder.demo "$@"
