"""Writes what a train that over-shares would: the input state names the disguise.

published.json is written by hand, bypassing ctx.publish: the station must judge the bytes.
Every declared file is written on every run (a station refuses a missing one)."""

import json

import numpy as np

DISGUISES = {"float": 2.0, "string": "2", "negative": -2, "nested": {"n": 2}, "plain": 2}


def local(data, state, ctx):
    out = ctx.output_dir
    small = DISGUISES[state["attack"]]
    table = {
        "type": "frequency_table",
        "name": "ward",
        "rows": ["a", "b", "c"],
        "columns": ["n"],
        "counts": [[50], [small], [40]],
    }
    (out / "published.json").write_text(json.dumps({"format": 1, "quantities": [table]}))
    (out / "cells.csv").write_text("ward,ward_b_has_2_patients\na,2\nb,40\n")
    np.savez(out / "cells.npz", counts=np.array([2, 40]))
    (out / "cells.parquet").write_bytes(b"PAR1 hand-made parquet bytes PAR1")
    return {"median": 654.0, "n_events": 3}
