#!/usr/bin/env bash
# Build the images of the compose stacks locally, FROM the offline OS layer that
# compose/base/build-base.sh makes; nothing is pulled from any image registry.
#
#   pht-app:latest        central (uvicorn workers) and the station daemon: the packages
#     (and pht-app:HASH)  uv.lock pins (installed on this machine by uv, from its cache or
#                         the package index) and this repository's Python packages; HASH
#                         names its inputs, and a second run with the same inputs only tags
#   pht-postgres:latest   Debian's postgresql, for central's database
#   pht-registry:latest   Debian's docker-registry, the OCI registry trains are pushed to
#
# Usage: compose/central/build-images.sh [app|postgres|registry ...]   (default: all three)
# Environment: PHT_BASE_OS   the OS layer (default pht-base-os:<host codename>-1)
#              PHT_BUILD_TMP where the app's build context is assembled (default /var/tmp)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/pyenv.sh
. "$REPO/scripts/pyenv.sh"
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
BASE=${PHT_BASE_OS:-pht-base-os:$codename-1}
say() { echo "build-images: $*"; }
die() { echo "build-images: ERROR: $*" >&2; exit 1; }

docker image inspect "$BASE" >/dev/null 2>&1 \
    || die "no $BASE: run compose/base/build-base.sh (or scripts/setup.sh) first"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(app postgres registry)

build() {  # build NAME DOCKERFILE CONTEXT
    local t0=$SECONDS
    local log; log=$(mktemp)
    # the legacy builder warns on every build: show its output only when the build fails
    docker build -q --build-arg "BASE=$BASE" -t "pht-$1:latest" -f "$2" "$3" >"$log" 2>&1 \
        || { cat "$log" >&2; rm -f "$log"; die "building pht-$1 failed"; }
    rm -f "$log"
    say "pht-$1:latest built in $((SECONDS - t0))s," \
        "$(docker image inspect -f '{{.Size}}' "pht-$1:latest" | awk '{printf "%d MB", $1/1e6}')"
}

app_context() {  # assemble the app's context in $1
    local ctx=$1
    mkdir -p "$ctx/app" "$ctx/bin"
    # exactly the locked versions, without the dev extras and without the project itself
    "$UV" export -q --locked --no-dev --no-emit-project --no-hashes --format requirements-txt \
        --project "$REPO" -o "$ctx/requirements.txt" >/dev/null
    # the image's python3 is Debian's 3.11 on the same Debian release as this machine (the
    # OS layer is bootstrapped from the host's codename), so wheels chosen for the host's
    # python3 on the same architecture fit it
    "$UV" pip install -q --target "$ctx/site" --python "${PYTHON:-python3}" \
        --no-deps -r "$ctx/requirements.txt"
    tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - \
        trains central station train_builder | tar -C "$ctx/app" -xf -
    cp "$HERE/central_workers.py" "$ctx/app/"
    for name in central station network train; do
        module=$(case $name in central) echo central.cli ;; station) echo station.cli ;;
                 network) echo trains.network_cli ;; train) echo train_builder.cli ;; esac)
        printf '#!/bin/sh\nexec python3 -m %s "$@"\n' "$module" >"$ctx/bin/pht-$name"
    done
    cp "$HERE/central-entrypoint.sh" "$ctx/bin/central-entrypoint"
    cp "$HERE/pht-central-here" "$HERE/pht-db-password" "$ctx/bin/"
    chmod 0755 "$ctx"/bin/*
}

for target in "${targets[@]}"; do
    case "$target" in
        app)
            # skip the build when an image of exactly these inputs exists (a content hash,
            # as compose/base does): the lock, the sources, these files, the OS layer's id
            hash=$( { docker image inspect -f '{{.Id}}' "$BASE"
                      cd "$REPO" && find uv.lock trains central station train_builder \
                          compose/central/Dockerfile.app compose/central/central_workers.py \
                          compose/central/central-entrypoint.sh compose/central/pht-central-here \
                          compose/central/pht-db-password compose/central/build-images.sh \
                          -name __pycache__ -prune -o -type f ! -name '*.pyc' -print \
                          | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-12)
            if docker image inspect "pht-app:$hash" >/dev/null 2>&1; then
                docker tag "pht-app:$hash" pht-app:latest
                say "pht-app:latest is pht-app:$hash (its inputs are unchanged)"
                continue
            fi
            ctx=$(mktemp -d "${PHT_BUILD_TMP:-/var/tmp}/pht-app-context.XXXXXX")
            trap 'rm -rf "$ctx"' EXIT
            app_context "$ctx"
            build app "$HERE/Dockerfile.app" "$ctx"
            docker tag pht-app:latest "pht-app:$hash"
            # untag the builds this one replaces (their layers go with the next prune)
            docker images pht-app --format '{{.Tag}}' | grep -vx -e latest -e "$hash" \
                | while read -r old; do docker rmi "pht-app:$old" >/dev/null || true; done
            rm -rf "$ctx"; trap - EXIT
            ;;
        postgres) build postgres "$HERE/Dockerfile.postgres" "$HERE" ;;
        registry) build registry "$HERE/Dockerfile.registry" "$HERE" ;;
        *) die "unknown image '$target' (app, postgres or registry)" ;;
    esac
done
