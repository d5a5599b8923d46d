"""Counts rows, and refuses (``too_few_rows``) where there are fewer than min_rows; the last
stop publishes the count, typed."""

from trains.runtime.design import require_min_rows


def local(data, state, ctx):
    rows = len(data["cohort"])
    require_min_rows(rows, ctx)
    total = rows + (state or {}).get("rows", 0)
    if ctx.is_last:  # the release point: the count leaves as a frequency table
        ctx.publish.frequency_table("rows", ["all"], [total])
    return {"rows": total}
