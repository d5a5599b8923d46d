"""Running ``station.output_parse`` in a child process: the one way the daemon reads the
bytes a train wrote (its own memory, CPU and file-size limits are set in the child)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from trains.errors import StateInvalid

PARSE_TIMEOUT_S = 600.0  # wall clock for one output's parse (its CPU limit is lower)


def run_parser(request: dict[str, Any], too_slow: str) -> subprocess.CompletedProcess[bytes]:
    """The child's run on ``request``; StateInvalid saying ``too_slow`` (what to do) when
    it overruns ``PARSE_TIMEOUT_S``."""
    try:
        return subprocess.run(
            # -P: no working directory on the module path; this package and the stdlib only
            [sys.executable, "-P", "-m", "station.output_parse"],
            input=json.dumps(request).encode(),
            cwd="/",
            capture_output=True,
            timeout=PARSE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StateInvalid(f"{too_slow} (over {PARSE_TIMEOUT_S:.0f}s)") from None
