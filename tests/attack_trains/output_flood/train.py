"""Writes 1 GB to /pht/output, then keeps trying in many small files."""

import sys
from pathlib import Path

CHUNK = b"\0" * (1 << 20)


def local(data, state, ctx):
    out = Path("/pht/output")
    written = 0
    try:
        with (out / "state.json").open("wb") as handle:
            for _ in range(1024):
                handle.write(CHUNK)
                written += len(CHUNK)
    except OSError as exc:
        print(f"flood stopped after {written >> 20} MB: {exc.strerror}", flush=True)
    files = 0
    try:
        for files in range(100_000):
            (out / f"f{files}").write_bytes(b"x" * 4096)
    except OSError as exc:
        print(f"then {files} small files: {exc.strerror}", flush=True)
    sys.exit(3)
