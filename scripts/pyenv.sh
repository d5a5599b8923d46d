# Sourced by setup.sh, test.sh and demo.sh: where the project's Python environment lives.
#
# The project is installed from uv.lock into $PHT_VENV (default <repo>/.venv) by uv, whose
# version is pinned here; setup.sh installs that uv with pip into a venv of its own.
# See docs/dependencies.md.
# shellcheck shell=bash
UV_VERSION=0.13.9                       # bump here to move to another uv
UV_HOME=/var/lib/pht/uv-$UV_VERSION     # a venv holding only uv (setup.sh creates it)
UV=$UV_HOME/bin/uv
PHT_VENV=${PHT_VENV:-$REPO/.venv}
export UV_PROJECT_ENVIRONMENT=$PHT_VENV
export UV_PYTHON_DOWNLOADS=never        # use the machine's python3, never fetch one

# Run with the project's venv: its python, and its bin/ (pht-train, pht-station,
# pht-central) first on PATH.
use_venv() {
    export VIRTUAL_ENV=$PHT_VENV
    export PATH="$PHT_VENV/bin:$PATH"
}
