"""Every process forks forever; the first one reports how many it managed."""

import os
import time


def local(data, state, ctx):
    children = 0
    reported = False
    while True:
        try:
            if os.fork() == 0:
                reported = True  # a child never reports; it just keeps forking
                continue
            children += 1
        except OSError as exc:
            if not reported:
                print(f"fork refused after {children} children: {exc.strerror}", flush=True)
                reported = True
            time.sleep(0.01)
