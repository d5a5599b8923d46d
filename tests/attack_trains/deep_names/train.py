"""Nests folders named after the first patient's ward so deep that the path fits in the
container but not under the station's longer work folder: copying the output out fails
with an error that would quote the names."""

import os


def local(data, state, ctx):
    ward = str(data["cohort"]["ward"].iloc[0])
    segment = (ward + "-" + "x" * 254)[:254]
    path = str(ctx.output_dir)
    while len(path) + 1 + len(segment) < 4092:
        path = os.path.join(path, segment)
    os.makedirs(path)
    return {"depth": path.count("/")}
