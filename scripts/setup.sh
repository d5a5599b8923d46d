#!/usr/bin/env bash
# One-shot setup of a fresh Debian/Ubuntu machine for pht, as root. Idempotent: a second
# run only checks and takes a few seconds.
#
#   1. apt: install whichever of docker.io, docker-registry, debootstrap, postgresql are missing
#      (apt-get update only when something has to be installed)
#   2. pip: install this repository in editable mode with the dev extras
#      (skipped when pyproject.toml is unchanged since the last successful install)
#   3. start the Docker daemon if it is not running   (scripts/start-dockerd.sh)
#   4. build the train base image without pulling     (compose/base/build-base.sh)
#
# Usage: scripts/setup.sh [--no-pip] [--force-base]
# Environment: PYTHON  the interpreter to install into (default: python3 on PATH)
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PYTHON=${PYTHON:-python3}
DO_PIP=1
BASE_ARGS=()

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-pip) DO_PIP=0; shift ;;
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
for p in docker.io docker-registry debootstrap postgresql; do
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
    esac
done
if [ "$DO_PIP" = 1 ] && ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    [ "$PYTHON" = python3 ] || die "$PYTHON has no pip"
    want+=(python3-pip python3-venv)
fi
if [ ${#want[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${want[*]} and no apt-get to install them"
    say "apt: installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
else
    say "apt: docker.io, docker-registry, debootstrap, postgresql present"
fi

# --- 2. the Python package ------------------------------------------------------------------
if [ "$DO_PIP" = 0 ]; then
    say "pip: skipped (--no-pip)"
elif [ ! -f "$REPO/pyproject.toml" ]; then
    say "pip: no pyproject.toml in $REPO, skipped"
else
    py_exe=$("$PYTHON" -c 'import sys; print(sys.executable)')
    stamp_dir=/var/lib/pht
    stamp="$stamp_dir/setup-$(printf '%s' "$REPO" | sha256sum | cut -c1-16).stamp"
    want_stamp="$py_exe $(sha256sum <"$REPO/pyproject.toml" | cut -c1-64)"
    dist=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)
    # Installed, editable, from this very checkout? (importlib.metadata: much faster than pip)
    editable_here() {
        "$PYTHON" - "${dist:-pht}" "$REPO" <<'PY' >/dev/null 2>&1
import json, pathlib, sys
from importlib import metadata
d = metadata.distribution(sys.argv[1])
info = json.loads(d.read_text("direct_url.json") or "{}")
url = info.get("url", "")
ok = info.get("dir_info", {}).get("editable") and url.startswith("file://") \
    and pathlib.Path(url[7:]).resolve() == pathlib.Path(sys.argv[2]).resolve()
sys.exit(0 if ok else 1)
PY
    }
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] && editable_here; then
        say "pip: ${dist:-pht} already installed (editable) for $py_exe"
    else
        pip_args=(install -q -e ".[dev]")
        # A Debian/Ubuntu system Python refuses pip outside a venv (PEP 668) unless told.
        if "$PYTHON" -c 'import sys, sysconfig, os; sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")) else 1)'; then
            say "pip: $py_exe is externally managed; installing with --break-system-packages"
            pip_args+=(--break-system-packages)
        fi
        say "pip: installing ${REPO}[dev] into $py_exe"
        (cd "$REPO" && PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip "${pip_args[@]}")
        mkdir -p "$stamp_dir"
        echo "$want_stamp" >"$stamp"
    fi
fi

# --- 3. Docker daemon ----------------------------------------------------------------------------
"$SCRIPT_DIR/start-dockerd.sh"

# --- 4. base image -----------------------------------------------------------------------------
"$REPO/compose/base/build-base.sh" --repo "$REPO" "${BASE_ARGS[@]}"

say "done in $((SECONDS - t_start))s"
