"""What the station's sandbox costs per hop, under runc and under gVisor (runsc).

Builds the no-op train of tests/attack_trains FROM pht-base:latest, then runs it N times
four ways, interleaved so all see the same machine load:

* baseline: a bare ``docker run`` of the same image with the same folders bound in (no
  limits, no output volume, no holder), removed afterwards, under runc and under runsc;
* sandbox: ``DockerRunner.run``, i.e. every control of docs/sandbox.md, the tmpfs output
  volume, its holder container and the bounded copy-out, with runtime runc and runsc.

Prints the medians side by side. The bare runc run is the baseline; the rest is the cost of
the sandbox's controls and of gVisor. runsc must be registered with dockerd
(scripts/register-runsc.sh; scripts/setup.sh does it).

    python3 benchmarks/station_sandbox.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import docker

from station.runner import DockerRunner
from trains.manifest import Resources

REPO = Path(__file__).resolve().parents[1]
NOOP = REPO / "tests" / "attack_trains" / "noop"
TAG = "pht-bench/noop:latest"
DOCKERFILE = b"FROM pht-base:latest\nCOPY --chown=0:0 train/ /opt/train/\n"
RESOURCES = Resources(memory_mb=256, cpus=1.0, timeout_s=60, max_output_mb=10)
RUNTIMES = ("runc", "runsc")


def build(client: docker.DockerClient) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
        for path in sorted(NOOP.iterdir()):
            tar.add(path, arcname=f"train/{path.name}")
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=TAG, rm=True)
    return str(image.id)


def folders(root: Path) -> tuple[Path, Path, Path]:
    made = tuple(root / name for name in ("input", "data", "output"))
    for folder in made:
        folder.mkdir(parents=True)
        folder.chmod(0o777)
    return made  # type: ignore[return-value]


def bare(client: docker.DockerClient, image: str, root: Path, runtime: str) -> float:
    input_dir, data_dir, output_dir = folders(root)
    started = time.monotonic()
    client.containers.run(
        image,
        remove=True,
        runtime=runtime,
        volumes={
            str(input_dir): {"bind": "/pht/input", "mode": "ro"},
            str(data_dir): {"bind": "/pht/data", "mode": "ro"},
            str(output_dir): {"bind": "/pht/output", "mode": "rw"},
        },
    )
    return time.monotonic() - started


def sandboxed(runner: DockerRunner, image: str, root: Path) -> float:
    input_dir, data_dir, output_dir = folders(root)
    started = time.monotonic()
    result = runner.run(
        image,
        input_dir=input_dir,
        data_dir=data_dir,
        output_dir=output_dir,
        env={"PHT_MODE": "local"},
        resources=RESOURCES,
    )
    elapsed = time.monotonic() - started
    if not result.ok or not (output_dir / "state.json").is_file():
        raise SystemExit(f"the no-op train failed in the sandbox: {result.failure(RESOURCES)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env(timeout=300)
    image = build(client)
    runners = {runtime: DockerRunner(runtime=runtime) for runtime in RUNTIMES}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs + 1):  # the first round warms caches and is not counted
            for runtime in RUNTIMES:
                took = bare(client, image, Path(tmp) / f"b-{runtime}-{i}", runtime)
                times.setdefault(("bare", runtime), []).append(took)
                took = sandboxed(runners[runtime], image, Path(tmp) / f"s-{runtime}-{i}")
                times.setdefault(("sandbox", runtime), []).append(took)
    med = {key: statistics.median(values[1:]) for key, values in times.items()}
    base = med["bare", "runc"]
    print(f"no-op train, median of {args.runs} runs (wall time of one run, start to removed)")
    print(f"  {'':34} {'runc':>8} {'runsc':>8} {'runsc-runc':>11}")
    for kind, label in (
        ("bare", "baseline  bare docker run"),
        ("sandbox", "sandbox   DockerRunner.run"),
    ):
        runc, runsc = med[kind, "runc"], med[kind, "runsc"]
        print(f"  {label:34} {runc:7.3f}s {runsc:7.3f}s {runsc - runc:+10.3f}s")
    print(
        f"  {'sandbox overhead over bare runc':34} {med['sandbox', 'runc'] - base:+7.3f}s"
        f" {med['sandbox', 'runsc'] - base:+7.3f}s"
    )
    print(
        f"  {'ratio to bare runc':34} {med['sandbox', 'runc'] / base:7.2f}x"
        f" {med['sandbox', 'runsc'] / base:7.2f}x"
    )
    client.images.remove(TAG)


if __name__ == "__main__":
    main()
