"""Counts rows, and refuses (``too_few_rows``) where there are fewer than min_rows."""

from trains.runtime.design import require_min_rows


def local(data, state, ctx):
    rows = len(data["cohort"])
    require_min_rows(rows, ctx)
    return {"rows": rows + (state or {}).get("rows", 0)}
