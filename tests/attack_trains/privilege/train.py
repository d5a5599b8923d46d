"""Tries to become root or to gain capabilities."""

import ctypes
import errno
import os
import subprocess
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
PR_GET_SECCOMP = 21
PR_GET_NO_NEW_PRIVS = 39


def outcome(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, repr(exc))
    return "allowed"


def status():
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def prctl(option):
    """As the kernel (or gVisor) answers it; gVisor's /proc/self/status lacks NoNewPrivs."""
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.prctl(option, 0, 0, 0, 0)
    return str(value) if value >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def unshare(flags):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        return errno.errorcode.get(ctypes.get_errno(), "?")
    return "allowed"


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    return {"code": done.returncode, "said": (done.stdout + done.stderr).strip()[-200:]}


def local(data, state, ctx):
    proc = status()
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "groups": os.getgroups(),
        "setuid0": outcome(lambda: os.setuid(0)),
        "setgid0": outcome(lambda: os.setgid(0)),
        "CapEff": proc["CapEff"],
        "CapPrm": proc["CapPrm"],
        "CapBnd": proc["CapBnd"],
        "NoNewPrivs": prctl(PR_GET_NO_NEW_PRIVS),
        "Seccomp": prctl(PR_GET_SECCOMP),
        "unshare_user": unshare(CLONE_NEWUSER),
        "unshare_mount": unshare(CLONE_NEWNS),
        "setuid_su": run(["su", "-c", "id -u", "root"]),
        "setuid_mount": run(["mount", "-t", "tmpfs", "none", "/tmp"]),
        "chown_root": outcome(lambda: os.chown("/tmp", 0, 0)),
    }
