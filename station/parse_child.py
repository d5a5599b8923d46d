"""Running ``station.output_parse`` in a child process: the one way the daemon reads the
bytes a train wrote (its own memory, CPU and file-size limits are set in the child).

One child per output, and one spare kept warm: starting Python and importing the parser
is most of a small output's check (80 ms idle, hundreds under load), so one child is
started ahead and waits on its stdin, its imports done and its limits already set (the
parser sets them before it reads a byte of the request). The next check takes that spare,
sends it one request and reads its answer; the spare then exits and is never used again
(nothing of one train's output can reach the next train's check), and a new spare is
started right away. A spare that died while it waited is thrown away and replaced, never
used; the limits, the timeout and the failure of one check (ending that hop only) are
those of a child started cold.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import subprocess
import sys
import threading
from typing import Any

from trains.errors import StateInvalid

PARSE_TIMEOUT_S = 600.0  # wall clock for one output's parse (its CPU limit is lower)

# -P: no working directory on the module path; this package and the stdlib only
_COMMAND = [sys.executable, "-P", "-m", "station.output_parse"]


class _Spare:
    """At most one started parser child waiting for its one request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    def take(self) -> subprocess.Popen[bytes]:
        """The waiting child if it is still alive, else one started now: the caller's
        alone, for one request. Call :meth:`refill` once its answer is read."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.poll() is not None:
            child.communicate()  # died while it waited (killed, a limit): reaped, not used
            child = None
        return _start() if child is None else child

    def refill(self) -> None:
        """Start the next spare unless one waits (after a check, off its critical path)."""
        with self._lock:
            if self._child is not None:
                return
            # no spare this time if it cannot start (out of processes): the next check tries
            with contextlib.suppress(OSError):
                self._child = _start()

    def pid(self) -> int | None:
        """The waiting spare's process id (None if there is none): for tests and benchmarks."""
        with self._lock:
            return None if self._child is None else self._child.pid

    def discard(self) -> None:
        """End the waiting spare (at exit; a benchmark measuring the cold child)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            _end(child)


def _start() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _COMMAND,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )


def _end(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.communicate()  # reaped, its pipes closed


SPARE = _Spare()
atexit.register(SPARE.discard)


def run_parser(
    request: dict[str, Any], too_slow: str, warm: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """The child's run on ``request``; StateInvalid saying ``too_slow`` (what to do) when
    it overruns ``PARSE_TIMEOUT_S``. ``warm``: take the spare (the default); False starts
    a child for this request alone (the cold path, for comparison)."""
    child = SPARE.take() if warm else _start()
    try:
        stdout, stderr = child.communicate(json.dumps(request).encode(), PARSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _end(child)
        raise StateInvalid(f"{too_slow} (over {PARSE_TIMEOUT_S:.0f}s)") from None
    except BaseException:
        _end(child)
        raise
    finally:
        if warm:
            SPARE.refill()
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
