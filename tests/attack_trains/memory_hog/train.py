"""Allocates and touches memory until something stops it."""


def local(data, state, ctx):
    hoard = []
    while True:
        hoard.append(bytearray(b"x" * (1 << 20)))
        if len(hoard) % 16 == 0:
            print(f"holding {len(hoard)} MB", flush=True)
