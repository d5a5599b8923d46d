#!/usr/bin/env bash
# Build the pht train base image locally, pulling nothing from any image registry.
#
#   1. OS layer   pht-base-os:<codename>-1   debootstrap (minbase + python3, numpy, pandas,
#                                            scikit-learn from the host's Debian/Ubuntu mirror)
#                                            imported with `docker import`.
#   2. runtime    pht-base:<hash>, pht-base:latest
#                                            Dockerfile.runtime on top of the OS layer, adding
#                                            the train runtime (trains/__init__.py, trains/runtime/).
#
# Both steps are cached by tag: a second run only hashes a few files and re-tags :latest.
# <hash> = first 12 hex digits of the sha256 of these lines (LC_ALL=C, paths relative to
# the repo root, files sorted by path, *.pyc and __pycache__ left out):
#     os <os-tag>
#     file compose/base/Dockerfile.runtime <sha256 of its content>
#     file trains/__init__.py <sha256>
#     file trains/runtime/... <sha256>      (every file under trains/runtime)
#
# The mirror is read from apt's own configuration (deb822 *.sources or classic *.list),
# taking the entry whose suite is this host's codename. Nothing is downloaded but Debian
# packages.
#
# Usage: build-base.sh [--repo DIR] [--force] [--mirror URL] [--codename NAME]
#   --repo DIR       repository root (default: two levels above this script)
#   --force          rebuild the OS layer and the runtime layer even if the tags exist
#   --mirror URL     use this mirror instead of the one in apt's configuration
#   --codename NAME  distribution codename (default: VERSION_CODENAME of /etc/os-release)
# Environment: PHT_BUILD_TMP  where the rootfs is assembled (default /var/tmp)
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
FORCE=0
MIRROR=""
CODENAME=""
OS_REV=1                      # bump when the OS layer's recipe changes
OS_PACKAGES="python3,python3-numpy,python3-pandas,python3-sklearn"

say() { echo "build-base: $*"; }
die() { echo "build-base: ERROR: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --repo) [ $# -ge 2 ] || die "--repo needs a directory"
                REPO=$(cd "$2" 2>/dev/null && pwd) || die "no such directory: $2"; shift 2 ;;
        --repo=*) REPO=$(cd "${1#*=}" 2>/dev/null && pwd) || die "no such directory: ${1#*=}"; shift ;;
        --force) FORCE=1; shift ;;
        --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; MIRROR=$2; shift 2 ;;
        --mirror=*) MIRROR=${1#*=}; shift ;;
        --codename) [ $# -ge 2 ] || die "--codename needs a name"; CODENAME=$2; shift 2 ;;
        --codename=*) CODENAME=${1#*=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/setup.sh)"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/start-dockerd.sh)"

# One build at a time on this machine.
if command -v flock >/dev/null 2>&1 && [ -w /var/lock ]; then
    exec 9>/var/lock/pht-build-base.lock
    flock 9
fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

if [ -z "$CODENAME" ]; then
    # shellcheck disable=SC1091
    CODENAME=$( . /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-${UBUNTU_CODENAME:-}}" )
fi
[ -n "$CODENAME" ] || die "cannot tell the distribution codename (use --codename)"
OS_TAG="pht-base-os:${CODENAME}-${OS_REV}"

# --- find the mirror in apt's configuration --------------------------------------------
# Prints "URI<TAB>components(comma-separated)<TAB>signed-by-file-or-empty".
apt_mirror() {
    local code=$1 f out
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        out=$(awk -v code="$code" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; comps = ""; signed = ""; enabled = "yes"; key = ""
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^#/) continue
                    if (line ~ /^[ \t]/) {          # continuation line
                        if (key == "uris") uris = uris " " line
                        else if (key == "suites") suites = suites " " line
                        else if (key == "components") comps = comps " " line
                        continue
                    }
                    p = index(line, ":"); if (p == 0) continue
                    key = tolower(substr(line, 1, p - 1)); val = substr(line, p + 1)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "components") comps = val
                    else if (key == "signed-by") signed = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                gsub(/^[ \t]+|[ \t]+$/, "", enabled)
                if (enabled == "no") next
                nt = split(types, t, /[ \t]+/); okt = 0
                for (j = 1; j <= nt; j++) if (t[j] == "deb") okt = 1
                ns = split(suites, s, /[ \t]+/); oks = 0
                for (j = 1; j <= ns; j++) if (s[j] == code) oks = 1
                if (!okt || !oks) next
                nu = split(uris, u, /[ \t]+/); uri = ""
                for (j = 1; j <= nu; j++) if (u[j] != "") { uri = u[j]; break }
                if (uri == "") next
                nc = split(comps, c, /[ \t]+/); cl = ""
                for (j = 1; j <= nc; j++) if (c[j] != "") cl = (cl == "" ? c[j] : cl "," c[j])
                gsub(/^[ \t]+|[ \t]+$/, "", signed)
                if (signed ~ /[ \t]/) signed = ""   # inline key block, not a file
                printf "%s\t%s\t%s\n", uri, cl, signed
                exit
            }' "$f")
        if [ -n "$out" ]; then echo "$out"; return 0; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        out=$(awk -v code="$code" '
            /^[ \t]*deb[ \t]/ {
                i = 2; signed = ""
                if ($2 ~ /^\[/) {                 # [ option=value ... ]
                    for (; i <= NF; i++) {
                        if ($i ~ /^signed-by=/) { signed = $i; sub(/^signed-by=/, "", signed); sub(/\]$/, "", signed) }
                        if ($i ~ /\]$/) { i++; break }
                    }
                }
                uri = $i; suite = $(i + 1)
                if (suite != code) next
                cl = ""
                for (j = i + 2; j <= NF && $j !~ /^#/; j++) cl = (cl == "" ? $j : cl "," $j)
                printf "%s\t%s\t%s\n", uri, cl, signed
                exit
            }' "$f")
        if [ -n "$out" ]; then echo "$out"; return 0; fi
    done
    return 1
}

# --- 1. OS layer ---------------------------------------------------------------------------
ROOTFS_WORK=""
cleanup() {
    if [ -n "$ROOTFS_WORK" ] && [ -d "$ROOTFS_WORK" ]; then
        # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
        awk -v p="$ROOTFS_WORK/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r \
            | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$ROOTFS_WORK"
    fi
}
trap cleanup EXIT

# Debian's python3-scipy depends on python3-pythran, which pulls g++, Boost, the BLAS and
# Python headers into the image (about half a gigabyte). scipy needs none of it at run
# time. Replace python3-pythran by an empty package that provides it (so dpkg and apt
# stay consistent for images built FROM this one), then let apt remove everything that
# neither minbase nor the requested Python packages need.
drop_build_toolchain() {
    local root=$1 work=$2
    local keep="apt ${OS_PACKAGES//,/ }"
    # shellcheck disable=SC2016  # dpkg-query format, not a shell expansion
    if chroot "$root" dpkg-query -W -f '${Status}' python3-pythran 2>/dev/null | grep -q 'install ok installed'; then
        local stub="$work/stub"
        mkdir -p "$stub/DEBIAN"
        cat >"$stub/DEBIAN/control" <<'CONTROL'
Package: pht-python3-pythran-stub
Version: 1
Architecture: all
Maintainer: pht <root@localhost>
Priority: optional
Section: python
Provides: python3-pythran
Description: empty stand-in for python3-pythran in the pht base image
 python3-scipy depends on python3-pythran, which brings a C++ compiler, Boost and
 development headers. scipy does not use it at run time.
CONTROL
        dpkg-deb --root-owner-group --build "$stub" "$root/tmp/pythran-stub.deb" >/dev/null
        chroot "$root" dpkg -i /tmp/pythran-stub.deb
        rm -f "$root/tmp/pythran-stub.deb"
        chroot "$root" dpkg --purge python3-pythran
        keep="$keep pht-python3-pythran-stub"
    fi
    # Everything that is neither Priority required/Essential nor asked for becomes
    # "automatically installed"; autoremove then drops what nothing needs any more.
    local auto
    # shellcheck disable=SC2016
    auto=$(chroot "$root" dpkg-query -W -f '${Package} ${Priority} ${Essential}\n' \
        | awk -v keep=" $keep " '$2 != "required" && $3 != "yes" && index(keep, " " $1 " ") == 0 { print $1 }')
    if [ -n "$auto" ]; then
        # shellcheck disable=SC2086
        chroot "$root" apt-mark auto $auto >/dev/null
    fi
    # Suggests/Recommends must not keep anything (numpy suggests gcc and python3-dev).
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Use-Pty=0 \
        -o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false \
        autoremove --purge
}

build_os_layer() {
    [ "$(id -u)" -eq 0 ] || die "building the OS layer needs root (debootstrap)"
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (run scripts/setup.sh)"
    local uri comps signed line
    comps=main; signed=""
    if [ -n "$MIRROR" ]; then
        uri=$MIRROR
    else
        line=$(apt_mirror "$CODENAME") || die "no 'deb' entry for suite '$CODENAME' in apt's configuration (use --mirror)"
        IFS=$'\t' read -r uri comps signed <<<"$line"
        [ -n "$comps" ] || comps=main
    fi
    local args=(--variant=minbase "--include=$OS_PACKAGES" "--components=$comps")
    if [ -n "$signed" ] && [ -f "$signed" ] && [[ "$signed" == *.gpg ]]; then
        args+=("--keyring=$signed")
    fi
    local tmpbase=${PHT_BUILD_TMP:-/var/tmp}
    ROOTFS_WORK=$(mktemp -d "$tmpbase/pht-base-os.XXXXXX")
    local root="$ROOTFS_WORK/rootfs" log="$ROOTFS_WORK/debootstrap.log"
    mkdir "$root"
    say "OS layer: debootstrap $CODENAME (minbase + $OS_PACKAGES, components $comps)"
    local t0=$SECONDS
    if ! debootstrap "${args[@]}" "$CODENAME" "$root" "$uri" >"$log" 2>&1; then
        echo "build-base: ERROR: debootstrap failed; last lines of its log:" >&2
        tail -n 30 "$log" >&2
        [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    local t1=$SECONDS
    say "OS layer: debootstrap took $((t1 - t0))s; slimming the rootfs"
    # Unmount anything debootstrap left mounted before touching the tree.
    awk -v p="$root/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    drop_build_toolchain "$root" "$ROOTFS_WORK" >>"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "could not drop the build toolchain from the rootfs"; }
    (
        cd "$root"
        rm -rf debootstrap
        rm -rf var/cache/apt/archives/*.deb var/cache/apt/archives/partial/* var/cache/apt/*.bin
        rm -rf var/lib/apt/lists/* var/cache/debconf/*-old var/lib/dpkg/*-old
        rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/lintian/* usr/share/linda/*
        find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
        find var/log -type f -delete
        rm -rf tmp/* var/tmp/* root/.cache dev/*
        : >etc/resolv.conf          # docker provides these at run time
        echo pht >etc/hostname
        rm -f etc/machine-id; : >etc/machine-id
    )
    say "OS layer: importing as $OS_TAG"
    tar --numeric-owner -C "$root" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' \
        -c "LABEL org.pht.base-os=$OS_TAG org.opencontainers.image.title=pht-base-os" \
        -m "debootstrap --variant=minbase $CODENAME + $OS_PACKAGES" \
        - "$OS_TAG" >/dev/null
    cleanup; ROOTFS_WORK=""
    say "OS layer: built $OS_TAG in $((SECONDS - t0))s (debootstrap $((t1 - t0))s)"
    local versions
    versions=$(docker run --rm --network none "$OS_TAG" python3 -c \
        'import sys, numpy, pandas, sklearn; print("python", sys.version.split()[0], "numpy", numpy.__version__, "pandas", pandas.__version__, "sklearn", sklearn.__version__)') \
        || { docker rmi "$OS_TAG" >/dev/null 2>&1 || true; die "$OS_TAG cannot import numpy/pandas/sklearn; image removed"; }
    say "OS layer: ok: $versions"
}

if [ "$FORCE" = 1 ] || ! image_exists "$OS_TAG"; then
    build_os_layer
else
    say "OS layer: $OS_TAG exists (cached)"
fi

# --- 2. runtime layer ------------------------------------------------------------------------
DOCKERFILE="$SCRIPT_DIR/Dockerfile.runtime"
[ -f "$DOCKERFILE" ] || die "missing $DOCKERFILE"
[ -f "$REPO/trains/__init__.py" ] || die "missing $REPO/trains/__init__.py (is --repo right?)"
[ -d "$REPO/trains/runtime" ] || die "missing $REPO/trains/runtime/ (is --repo right?)"

runtime_files() {
    (
        cd "$REPO"
        echo trains/__init__.py
        find trains/runtime -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort
    )
}
file_sha() { sha256sum <"$1" | cut -c1-64; }

HASH=$(
    {
        printf 'os %s\n' "$OS_TAG"
        printf 'file compose/base/Dockerfile.runtime %s\n' "$(file_sha "$DOCKERFILE")"
        runtime_files | while IFS= read -r f; do
            printf 'file %s %s\n' "$f" "$(file_sha "$REPO/$f")"
        done
    } | LC_ALL=C sha256sum | cut -c1-12
)
BASE_TAG="pht-base:$HASH"

# The hash names the OS layer by tag; the label says which build of it the image sits on,
# so a rebuilt OS layer (same tag, new id) also rebuilds the runtime layer.
OS_ID=$(docker image inspect -f '{{.Id}}' "$OS_TAG")
base_os_id() { docker image inspect -f '{{index .Config.Labels "org.pht.base-os-id"}}' "$1" 2>/dev/null || true; }

if [ "$FORCE" = 0 ] && image_exists "$BASE_TAG" && [ "$(base_os_id "$BASE_TAG")" = "$OS_ID" ]; then
    say "runtime layer: $BASE_TAG exists (cached)"
else
    CTX=$(mktemp -d "${TMPDIR:-/tmp}/pht-base-ctx.XXXXXX")
    trap 'cleanup; rm -rf "$CTX"' EXIT
    runtime_files | (cd "$REPO" && tar --no-recursion -c -T -) | tar -C "$CTX" -x
    chmod -R a+rX,go-w "$CTX/trains"
    cp "$DOCKERFILE" "$CTX/Dockerfile"
    build_args=(--build-arg "BASE=$OS_TAG" --build-arg "PHT_BASE_HASH=$HASH"
        --build-arg "PHT_BASE_OS_ID=$OS_ID" -t "$BASE_TAG")
    [ "$FORCE" = 1 ] && build_args+=(--no-cache)
    # Without the buildx plugin, a newer CLI must be told to use the classic builder.
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    say "runtime layer: docker build -> $BASE_TAG"
    t0=$SECONDS
    if ! docker build "${build_args[@]}" "$CTX" >"$CTX.log" 2>&1; then
        echo "build-base: ERROR: docker build failed:" >&2
        tail -n 40 "$CTX.log" >&2
        rm -f "$CTX.log"
        exit 1
    fi
    rm -f "$CTX.log"
    say "runtime layer: built in $((SECONDS - t0))s"
    docker run --rm --network none --read-only --cap-drop ALL \
        --security-opt no-new-privileges --entrypoint python3 "$BASE_TAG" \
        -c 'import trains.runtime, numpy, pandas' \
        || { docker rmi "$BASE_TAG" >/dev/null 2>&1 || true; die "$BASE_TAG cannot import trains.runtime; image removed"; }
fi
docker tag "$BASE_TAG" pht-base:latest
say "done: $BASE_TAG = pht-base:latest (on $OS_TAG)"
