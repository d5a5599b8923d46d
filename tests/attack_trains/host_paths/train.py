"""Looks for the host: a file the test planted there, the Docker socket, host devices."""

import errno
import os
from pathlib import Path


def outcome(action):
    try:
        return action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, repr(exc))


def local(data, state, ctx):
    secret = os.environ["ATTACK_HOST_FILE"]
    return {
        "host_file": outcome(lambda: Path(secret).read_text()),
        "host_file_via_proc1": outcome(lambda: Path("/proc/1/root" + secret).read_text()),
        "shadow": outcome(lambda: Path("/etc/shadow").read_text()[:10]),
        "docker_sockets": [
            p
            for p in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd")
            if os.path.exists(p)
        ],
        "devices": sorted(os.listdir("/dev")),
        "block_devices": sorted(p.name for p in Path("/dev").iterdir() if p.is_block_device()),
        "mknod": outcome(lambda: os.mknod("/tmp/disk", 0o600 | 0o060000, os.makedev(8, 0))),
        "disk_read": outcome(lambda: Path("/tmp/disk").read_bytes()[:16].hex()),
        "pid1": Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode(),
        "hostname": os.uname().nodename,
        "cgroups": sorted(
            {line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().split()}
        ),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
