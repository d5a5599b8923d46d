"""Tries to change what it was handed: the input state and its dataset."""

import errno
import os
from pathlib import Path


def outcome(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, repr(exc))
    return "changed"


def local(data, state, ctx):
    csv = next(Path("/pht/data/cohort").glob("*.csv"))
    with csv.open() as handle:
        rows_seen = sum(1 for _ in handle) - 1
    return {
        "rows_seen": rows_seen,
        "state_seen": state,
        "append_input": outcome(lambda: open("/pht/input/state.json", "a").write("x")),
        "new_input_file": outcome(lambda: Path("/pht/input/extra.json").write_text("{}")),
        "delete_input": outcome(lambda: os.unlink("/pht/input/state.json")),
        "overwrite_data": outcome(lambda: csv.write_text("id\n1\n")),
        "delete_data": outcome(lambda: csv.unlink()),
        "rename_data": outcome(lambda: csv.rename(csv.with_suffix(".bak"))),
        "chmod_data": outcome(lambda: os.chmod(csv, 0o777)),
    }
