"""Patients per age as a typed frequency table in published.json (format of
trains/published.py), written by hand so that this test needs no runtime publish API."""

import json


def local(data, state, ctx):
    ages = data["cohort"]["age"].value_counts().sort_index()
    table = {
        "type": "frequency_table",
        "name": "patients per age",
        "rows": [str(int(age)) for age in ages.index],
        "columns": ["patients"],
        "counts": [[int(n)] for n in ages.to_numpy()],
    }
    (ctx.output_dir / "published.json").write_text(json.dumps({"format": 1, "quantities": [table]}))
    return {}
