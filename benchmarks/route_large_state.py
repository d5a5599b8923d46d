"""A large state over a three-stop route, end to end on real parts (issue 18 item 5).

Starts a registry, central and three station daemons (train_builder.localnet, real Docker),
pushes a train that carries a state of ``--mb`` MB (a file ``weights.npy``: written at the
first stop, read and written again at each later stop), runs it once, and prints where
each hop's time goes (the station's steps as signed in the receipts, central's queue wait,
claim and delivery) next to baselines measured in the same run on the same disk: one copy
of a file of the state's size (cp + fsync), and one sha256 of it.

The last stop is the release point: a file other than published.json there is held for
its admin (docs/station-admin.md), so the benchmark releases it as an admin would
(``pht-station release --yes``); that wait is part of the last hop's claim_and_delivery.
The researcher's ``result`` (download, verify, open and unpack the released state) is
timed too.

    python3 benchmarks/route_large_state.py [--mb 1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from state_common import measure_baselines, write_random  # run as: python3 benchmarks/...

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from train_builder.timeline import STEPS, hop_breakdown

HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]
ADMIN = [sys.executable, "-m", "station.cli"]

TRAIN_PY = '''"""Carries a large model file from stop to stop (benchmarks/route_large_state.py)."""

import os
import shutil
from pathlib import Path

SIZE = {size}


def local(data, state, ctx):
    out = ctx.output_dir / "weights.npy"
    carried = Path("/pht/input/weights.npy")
    if carried.is_file():  # a model handed on: read and written again
        shutil.copyfile(carried, out)
    else:
        with out.open("wb") as handle:
            for _ in range(SIZE // (1 << 20)):
                handle.write(os.urandom(1 << 20))
            handle.write(os.urandom(SIZE % (1 << 20)))
    hops = (state or {{}}).get("hops", 0) + 1
    if ctx.is_last:
        ctx.publish.statistic("route/hops", "other", hops, 100)
    return {{"hops": hops, "bytes": out.stat().st_size}}
'''

TRAIN_TOML = """datasets = ["cohort"]
outputs = ["state.json", "weights.npy"]

[train]
name = "large-state"
version = "0.1.0"
description = "a large state over a route"

[resources]
memory_mb = 2048
cpus = 1.0
timeout_s = 1800
max_output_mb = {max_mb}
"""


def write_train(folder: Path, size: int) -> None:
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN_PY.format(size=size))
    (folder / "train.toml").write_text(TRAIN_TOML.format(max_mb=size // (1 << 20) + 16))


def release_held(net: LocalNet, train_id: str, hop: int) -> bool:
    """Release the last hop's held output as its admin would; False if not held (yet)."""
    station = net.stations[HOSPITALS[hop % len(HOSPITALS)]]
    done = subprocess.run(
        [*ADMIN, "release", f"{train_id}-{hop}", "--yes", "--config", str(station.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="state size, MB (10^6 bytes)")
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with (
        tempfile.TemporaryDirectory(prefix="pht-route-large-", dir="/var/tmp") as tmp,
        LocalNet(Path(tmp)) as net,
    ):
        root = Path(tmp)
        write_random(root / "probe.bin", size)
        baselines = measure_baselines(root / "probe.bin", root / "probe.copy")
        (root / "probe.bin").unlink()
        cohort = root / "cohort.csv"
        cohort.write_text("x\n" + "\n".join(str(i) for i in range(50)) + "\n")
        net.start_registry()
        net.start_central()
        alice, _, token = net.add_researcher("bench")
        for name in HOSPITALS:
            net.add_station(name, {"cohort": cohort}, trusted=[alice])
            net.start_station(name)
        folder = root / "large-state"
        write_train(folder, size)
        _, tag = build_image(folder, net.registry)
        image = push_image(tag)
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())
        started = time.monotonic()
        train_id = researcher.submit(folder, image, HOSPITALS)
        last = len(HOSPITALS) - 1
        released = False
        status: dict[str, object] = {}
        while time.monotonic() - started < 3600:
            status = researcher.status(train_id)
            if status["status"] in ("done", "failed", "cancelled"):
                break
            if not released:
                released = release_held(net, train_id, last)
            time.sleep(0.5)
        route = time.monotonic() - started
        if status.get("status") != "done":
            print(f"the train did not finish: {status}")
            for name in HOSPITALS:
                print(f"--- {name} log tail\n{net.stations[name].log.read_text()[-3000:]}")
            raise SystemExit(1)
        before = time.monotonic()
        result = researcher.result(train_id, root / "result")
        fetched = time.monotonic() - before
        got = (root / "result" / "weights.npy").stat().st_size
        now, signed = researcher.timeline(train_id)
        shutil.rmtree(root / "result")
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for hop in now["hops"]:
        steps[hop["index"]] = hop_breakdown(hop, signed.get(hop["index"]))
    copy, sha = baselines["copy"], baselines["sha256"]
    print(f"a {args.mb} MB state over {len(HOSPITALS)} stops: done in {route:.1f} s")
    print(f"baselines, same run, same disk: copy (cp + fsync) {copy:.2f} s, sha256 {sha:.2f} s")
    names = [
        s for s in ("queued", *STEPS, "claim_and_delivery") if any(s in h for h in steps.values())
    ]
    print(f"{'step':<19}" + "".join(f"{'hop ' + str(i):>10}" for i in sorted(steps)) + "   max/cp")
    for step in names:
        cells = [steps[i].get(step, 0.0) for i in sorted(steps)]
        print(
            f"{step:<19}" + "".join(f"{c:>10.2f}" for c in cells) + f"   {max(cells) / copy:>5.1f}x"
        )
    work = {
        i: sum(v for k, v in h.items() if k not in ("queued", "container"))
        for i, h in steps.items()
    }
    print(
        "station + central work per hop (all but queued and container): "
        + ", ".join(f"hop {i} {w:.1f} s = {w / copy:.1f}x copy" for i, w in sorted(work.items()))
    )
    print(
        "container (the train's own copy of the state): "
        + ", ".join(f"{h.get('container', 0.0):.1f} s" for h in steps.values())
    )
    print(
        f"researcher result (download, verify, open, unpack): {fetched:.2f} s "
        f"= {fetched / copy:.1f}x copy"
    )
    print(f"result: {len(result.files)} files, weights.npy {got} bytes (sent {size})")
    assert got == size


if __name__ == "__main__":
    main()
