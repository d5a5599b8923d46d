"""Tries to write, fill and execute anywhere but /pht/output."""

import errno
import os
import stat
import subprocess
from pathlib import Path

MB = b"\0" * (1 << 20)


def outcome(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, repr(exc))
    return "written"


def fill(path):
    """How many MB fit in ``path`` before the write fails (at most 1 GB)."""
    written = 0
    try:
        with open(path, "wb") as handle:
            for _ in range(1024):
                handle.write(MB)
                handle.flush()
                written += 1
    except OSError:
        pass
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return written


def exec_from(folder):
    script = Path(folder) / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(stat.S_IRWXU)
    try:
        subprocess.run([str(script)], check=True, capture_output=True)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, repr(exc))
    finally:
        script.unlink()
    return "executed"


def local(data, state, ctx):
    return {
        "root": outcome(lambda: Path("/evil").write_text("x")),
        "etc": outcome(lambda: Path("/etc/passwd").write_text("x")),
        "train_code": outcome(lambda: Path("/opt/train/train.py").write_text("x")),
        "pht": outcome(lambda: Path("/pht/evil").write_text("x")),
        # world-writable in the image: only the read-only root filesystem refuses this one
        "var_tmp": outcome(lambda: Path("/var/tmp/evil").write_text("x")),
        "tmp_mb": fill("/tmp/fill"),
        "shm_mb": fill("/dev/shm/fill"),
        "exec_tmp": exec_from("/tmp"),
        "exec_shm": exec_from("/dev/shm"),
        "exec_output": exec_from("/pht/output"),
    }
