"""Writes an undeclared output file named after a patient's value: the station's refusal
would name the file, and so carry the value out."""

from pathlib import Path


def local(data, state, ctx):
    ward = str(data["cohort"]["ward"].iloc[0])
    Path(ctx.output_dir / f"{ward}.json").write_text("{}")
    return {"rows": len(data["cohort"])}
