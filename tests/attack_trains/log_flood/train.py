"""Prints 256 MB to stdout: Docker's log of it must stay small on the station's disk."""

import sys


def local(data, state, ctx):
    line = "x" * 1023 + "\n"
    for _ in range(1 << 18):
        sys.stdout.write(line)
    sys.stdout.write("flood done\n")
    return {"printed_mb": 256}
