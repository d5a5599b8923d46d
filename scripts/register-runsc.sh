#!/usr/bin/env bash
# Register gVisor's runsc with the Docker daemon as the runtime "runsc". Idempotent.
#
# Merges one entry into /etc/docker/daemon.json (every other setting is kept; a file that
# is not valid JSON is left alone and reported), then makes a running dockerd reload it
# (SIGHUP) and waits until `docker info` lists runsc. A dockerd that is not running reads
# it when it starts. Stations run their trains under it with runtime = "runsc" in
# station.toml (docs/sandbox.md, "gVisor").
#
# runsc's arguments:
#   --platform=ptrace  intercepts the train's system calls with ptrace: needs no KVM, so it
#                      works in VMs and CI (slower than KVM where that is available)
#   --network=none     the sandbox has no network stack beyond loopback, whatever Docker asks
#
# Environment: PHT_DOCKER_CONFIG  the daemon's config (default /etc/docker/daemon.json)
#              PHT_DOCKERD_TIMEOUT  seconds to wait for the reload (default 30)
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
CONFIG=${PHT_DOCKER_CONFIG:-/etc/docker/daemon.json}
TIMEOUT=${PHT_DOCKERD_TIMEOUT:-30}
ARGS=(--platform=ptrace --network=none)

say() { echo "register-runsc: $*"; }
die() { echo "register-runsc: ERROR: $*" >&2; exit 1; }

RUNSC=$(command -v runsc) || die "runsc not found (apt-get install runsc, or run scripts/setup.sh)"
[ "$(id -u)" -eq 0 ] || die "run as root (writes $CONFIG, signals dockerd)"

registered() {
    docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null \
        | tr ' ' '\n' | grep -qx runsc
}

# Merge {"runtimes": {"runsc": {...}}} into the config; prints "changed" or "unchanged".
mkdir -p "$(dirname "$CONFIG")"
outcome=$(python3 - "$CONFIG" "$RUNSC" "${ARGS[@]}" <<'PY'
import json, os, sys, tempfile

path, runsc, args = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
except ValueError as exc:
    sys.exit(f"{path} is not valid JSON ({exc}); fix it, then run this again")
if not isinstance(config, dict) or not isinstance(config.get("runtimes", {}), dict):
    sys.exit(f"{path}: expected a JSON object with an object 'runtimes'; fix it by hand")
entry = {"path": runsc, "runtimeArgs": args}
if config.get("runtimes", {}).get("runsc") == entry:
    print("unchanged")
    sys.exit(0)
config.setdefault("runtimes", {})["runsc"] = entry
folder = os.path.dirname(path) or "."
fd, tmp = tempfile.mkstemp(dir=folder, prefix=".daemon.json.")
with os.fdopen(fd, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, path)
print("changed")
PY
) || die "could not update $CONFIG"

if [ "$outcome" = unchanged ] && registered; then
    say "runsc is registered with dockerd ($RUNSC ${ARGS[*]})"
    exit 0
fi
[ "$outcome" = changed ] && say "wrote the runsc runtime into $CONFIG"

pid=$(cat /var/run/docker.pid 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    pid=$(pgrep -x dockerd | head -n1 || true)
fi
if [ -z "$pid" ]; then
    say "dockerd is not running; it reads $CONFIG when it starts"
    exit 0
fi
say "reloading dockerd (pid $pid, SIGHUP)"
kill -HUP "$pid"
for _ in $(seq 1 "$TIMEOUT"); do
    if registered; then
        say "runsc is registered with dockerd ($RUNSC ${ARGS[*]})"
        exit 0
    fi
    sleep 1
done
die "dockerd did not list runsc ${TIMEOUT}s after SIGHUP; is it started with another --config-file? See its log"
