"""Pooled mean (round 0) and variance (round 1) of the ``weight`` column, in parallel rounds."""


def local(data, state, ctx):
    values = data["cohort"]["weight"].astype(float)
    if state is None:  # round 0: no aggregate yet
        return {"sum": float(values.sum()), "n": int(values.size)}
    deviations = float(((values - state["mean"]) ** 2).sum())
    return {"sum": deviations, "n": int(values.size), "mean": state["mean"]}


def aggregate(states, ctx):
    total = sum(s["sum"] for s in states)
    n = sum(s["n"] for s in states)
    if ctx.round == 0:
        result = {"mean": total / n, "n": n, "stations": len(states)}
    else:
        result = {
            "mean": states[0]["mean"],
            "variance": total / (n - 1),
            "n": n,
            "stations": len(states),
        }
    if ctx.is_last:  # the release point: only what is published, typed, leaves
        ctx.publish.statistic("weight/mean", "mean", result["mean"], n)
        if "variance" in result:
            ctx.publish.statistic("weight/variance", "variance", result["variance"], n)
    return result
