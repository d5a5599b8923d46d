#!/usr/bin/env bash
# One-shot setup of a fresh Debian/Ubuntu machine for pht, as root. Idempotent: a second
# run only checks and takes a few seconds.
#
#   1. apt: install whichever of docker.io, docker-registry, debootstrap, postgresql, runsc,
#      docker-compose, chromium, chromium-driver are missing (apt-get update only when
#      something has to be installed)
#   2. python: install uv (pinned in scripts/pyenv.sh) with pip into a venv of its own, then
#      `uv sync --locked`: this repository and exactly the versions in uv.lock, dev extras
#      included, into the project venv <repo>/.venv (skipped when uv.lock, pyproject.toml,
#      the interpreter and uv are unchanged since the last successful sync)
#   3. start the Docker daemon if it is not running   (scripts/start-dockerd.sh)
#   4. register gVisor's runsc with dockerd            (scripts/register-runsc.sh)
#   5. build the train base image without pulling     (compose/base/build-base.sh)
#
# Usage: scripts/setup.sh [--no-python] [--force-base]
# Environment: PYTHON    the interpreter the venv is made from (default: python3 on PATH)
#              PHT_VENV  where the project venv goes (default: <repo>/.venv)
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
# shellcheck source=scripts/pyenv.sh
. "$SCRIPT_DIR/pyenv.sh"
DO_PYTHON=1
BASE_ARGS=()

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-python) DO_PYTHON=0; shift ;;
        --force-base) BASE_ARGS+=(--force); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, starts dockerd, runs debootstrap)"
t_start=$SECONDS

# --- 1. Debian packages -------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in docker.io docker-registry debootstrap postgresql runsc docker-compose chromium \
    chromium-driver; do
    pkg_installed "$p" || missing+=("$p")
done
# The commands may also come from elsewhere (e.g. Docker's own packages): only the
# package for a command that is absent is required.
want=()
for p in "${missing[@]}"; do
    case "$p" in
        docker.io) { command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; } || want+=("$p") ;;
        docker-registry) command -v docker-registry >/dev/null 2>&1 || want+=("$p") ;;
        debootstrap) command -v debootstrap >/dev/null 2>&1 || want+=("$p") ;;
        # PostgreSQL: central's production database; tests start throwaway clusters of it.
        postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || want+=("$p") ;;
        # gVisor: the runtime a station may choose for its trains (station.toml's runtime)
        runsc) command -v runsc >/dev/null 2>&1 || want+=("$p") ;;
        # the compose stacks of compose/central and compose/station (docs/deploy.md)
        docker-compose) command -v docker-compose >/dev/null 2>&1 || want+=("$p") ;;
        # Chromium and its WebDriver: the station console's browser tests (Selenium)
        chromium) command -v chromium >/dev/null 2>&1 || want+=("$p") ;;
        chromium-driver) command -v chromedriver >/dev/null 2>&1 || want+=("$p") ;;
    esac
done
# uv's own venv is made with the interpreter's venv module (Debian: python3-venv)
if [ "$DO_PYTHON" = 1 ] && [ ! -x "$UV" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    [ "$PYTHON" = python3 ] || die "$PYTHON cannot make a venv (no ensurepip)"
    want+=(python3-venv)
fi
if [ ${#want[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${want[*]} and no apt-get to install them"
    say "apt: installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
else
    say "apt: docker.io, docker-registry, debootstrap, postgresql, runsc, docker-compose," \
        "chromium present"
fi

# --- 2. the Python environment: <repo>/.venv from uv.lock ------------------------------------
if [ "$DO_PYTHON" = 0 ]; then
    say "python: skipped (--no-python)"
else
    py_exe=$("$PYTHON" -c 'import sys; print(sys.executable)') || die "$PYTHON does not run"
    case "$("$UV" --version 2>/dev/null || true)" in
        "uv $UV_VERSION" | "uv $UV_VERSION "*) ;;
        *)
            say "uv: installing uv $UV_VERSION with pip into $UV_HOME"
            rm -rf "$UV_HOME"
            "$PYTHON" -m venv "$UV_HOME"
            PIP_ROOT_USER_ACTION=ignore "$UV_HOME/bin/python" -m pip install -q "uv==$UV_VERSION"
            ;;
    esac
    stamp=$PHT_VENV/.pht-setup-stamp
    want_stamp="uv $UV_VERSION $py_exe $(cat "$REPO/uv.lock" "$REPO/pyproject.toml" | sha256sum | cut -c1-64)"
    if [ -x "$PHT_VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
        say "python: $PHT_VENV is in sync with uv.lock"
    else
        say "python: installing uv.lock into $PHT_VENV (uv sync --locked, interpreter $py_exe)"
        (cd "$REPO" && "$UV" sync --locked --extra dev --python "$py_exe") \
            || die "uv sync failed; if uv.lock is out of date with pyproject.toml, run 'uv lock' (docs/dependencies.md)"
        echo "$want_stamp" >"$stamp"
    fi
fi

# --- 3. Docker daemon ----------------------------------------------------------------------------
"$SCRIPT_DIR/start-dockerd.sh"

# --- 4. gVisor's runsc, registered with dockerd ---------------------------------------------------
"$SCRIPT_DIR/register-runsc.sh"

# --- 5. base image -----------------------------------------------------------------------------
"$REPO/compose/base/build-base.sh" --repo "$REPO" "${BASE_ARGS[@]}"

say "done in $((SECONDS - t_start))s"
