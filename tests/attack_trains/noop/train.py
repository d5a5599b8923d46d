"""Does nothing: the baseline for start overhead and the success path."""


def local(data, state, ctx):
    return {"ok": True}
