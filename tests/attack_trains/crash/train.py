"""Writes a state, then fails: nothing it wrote may leave the station."""

import json
from pathlib import Path


def local(data, state, ctx):
    Path("/pht/output/state.json").write_text(json.dumps({"leak": "written before crash"}))
    print("about to fail", flush=True)
    raise RuntimeError("model did not converge")
