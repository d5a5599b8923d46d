"""Never returns, and ignores polite requests to stop."""

import signal


def local(data, state, ctx):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        pass
