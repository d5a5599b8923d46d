#!/usr/bin/env bash
# Start the Docker daemon if it is not already answering. Idempotent.
#
# For machines without systemd (CI, containers, VMs started bare). Where systemd
# manages docker, `docker info` already works and this script does nothing.
#
# Environment:
#   PHT_DOCKERD_LOG      log file (default /var/log/pht-dockerd.log)
#   PHT_DOCKERD_TIMEOUT  seconds to wait for the daemon (default 60)
#   PHT_DOCKERD_ARGS     extra arguments for dockerd (e.g. "--iptables=false")
set -euo pipefail

LOG=${PHT_DOCKERD_LOG:-/var/log/pht-dockerd.log}
TIMEOUT=${PHT_DOCKERD_TIMEOUT:-60}
PIDFILE=/var/run/docker.pid
SOCK=/var/run/docker.sock

say() { echo "start-dockerd: $*"; }
die() { echo "start-dockerd: ERROR: $*" >&2; exit 1; }

docker_ok() { docker info >/dev/null 2>&1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found (install the docker.io package)"

if docker_ok; then
    say "docker is already running"
    exit 0
fi

command -v dockerd >/dev/null 2>&1 || die "dockerd not found (install the docker.io package)"
[ "$(id -u)" -eq 0 ] || die "must run as root to start dockerd"

# Is a dockerd already running (maybe still starting up)?
running_pid=""
if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "dockerd" ]; then
        running_pid=$pid
    else
        say "removing stale $PIDFILE (pid '${pid}' is gone)"
        rm -f "$PIDFILE"
    fi
fi
if [ -z "$running_pid" ]; then
    running_pid=$(pgrep -x dockerd | head -n1 || true)
fi

if [ -n "$running_pid" ]; then
    say "dockerd (pid $running_pid) is running but not answering yet; waiting"
else
    if [ -S "$SOCK" ] || [ -e "$SOCK" ]; then
        say "removing stale $SOCK"
        rm -f "$SOCK"
    fi
    mkdir -p "$(dirname "$LOG")"
    say "starting dockerd (log: $LOG)"
    # shellcheck disable=SC2086  # PHT_DOCKERD_ARGS is split on purpose
    nohup dockerd ${PHT_DOCKERD_ARGS:-} >>"$LOG" 2>&1 </dev/null &
    running_pid=$!
    disown "$running_pid" 2>/dev/null || true
fi

for _ in $(seq 1 "$TIMEOUT"); do
    if docker_ok; then
        say "docker is up (dockerd pid $running_pid)"
        exit 0
    fi
    if ! kill -0 "$running_pid" 2>/dev/null; then
        echo "start-dockerd: ERROR: dockerd exited; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    sleep 1
done

echo "start-dockerd: ERROR: dockerd did not answer 'docker info' within ${TIMEOUT}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
