"""``pht-train test``: run a train's whole route on this machine, one data file per stop.

Sequential (each stop in turn, round after round) or parallel (``--parallel``: each round
every stop runs ``local`` on the previous aggregate, then ``aggregate`` joins the partial
states, in stop order, as the aggregator station of a parallel route would).

Each hop goes through the same code a station's container runs (``trains.runtime``):
in-process by default (seconds), or in real containers with the station's sandbox
(``in_docker=True``). Between hops the state travels as a station would pass it on: only
the declared output files, packed and unpacked by the state codec. No network, no central.

The data is the researcher's own sample data, so a train that raises shows its traceback
(only the frames of the train's own ``train.py``, none of pht's internals).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trains import state_codec
from trains.errors import ConfigError, StateInvalid, TrainFailed
from trains.runtime.core import STATE_FILE, Context, TrainCodeError, run_train
from trains.train_spec import CODE_FILE, TrainSpec, load_train_spec

CONTAINER_UID = 10001
LOCAL_REGISTRY = "pht-local"  # images built for local tests are tagged, never pushed


@dataclass(frozen=True)
class LocalStop:
    """One simulated station: its name and a data file per dataset."""

    station: str
    data: dict[str, Path]


@dataclass(frozen=True)
class LocalHop:
    hop: int
    round: int
    station: str
    seconds: float
    files: list[str]
    kind: str = "local"


@dataclass
class LocalResult:
    hops: list[LocalHop] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None


def parse_data(values: list[str], spec: TrainSpec) -> list[LocalStop]:
    """Each ``--data`` is one stop: ``PATH`` (the train's first dataset) or
    ``NAME=PATH[,NAME=PATH...]``. The stop is named after its first file."""
    if not values:
        raise ConfigError("give at least one --data FILE (one per station on the local route)")
    stops: list[LocalStop] = []
    for value in values:
        data: dict[str, Path] = {}
        for part in value.split(","):
            name, sep, path = part.partition("=")
            if not sep:
                if not spec.datasets:
                    raise ConfigError(
                        "train.toml requests no datasets, so --data has nothing to map to; "
                        'add datasets = ["name"] to train.toml'
                    )
                name, path = spec.datasets[0], part
            if name not in spec.datasets:
                raise ConfigError(
                    f"--data {value}: train.toml requests no dataset {name!r}; "
                    f"it requests {spec.datasets}"
                )
            file = Path(path).expanduser()
            if not file.is_file():
                raise ConfigError(f"data file {file} not found (from --data {value})")
            if file.suffix not in (".csv", ".parquet"):
                raise ConfigError(f"data file {file} must be a .csv or .parquet file")
            data[name] = file
        missing = [d for d in spec.datasets if d not in data]
        if missing:
            raise ConfigError(
                f"--data {value} gives no file for dataset(s) {missing}; "
                f"write it as {','.join(f'{d}=FILE' for d in spec.datasets)}"
            )
        stops.append(LocalStop(_unique(next(iter(data.values()), Path("site")).stem, stops), data))
    return stops


def _unique(name: str, stops: list[LocalStop]) -> str:
    taken = {s.station for s in stops}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


HopCallback = Callable[[LocalHop], None]


def run_local(
    folder: Path,
    stops: list[LocalStop],
    rounds: int = 1,
    *,
    in_docker: bool = False,
    base: str | None = None,
    wheelhouse: Path | None = None,
    out_dir: Path | None = None,
    on_hop: HopCallback | None = None,
    parallel: bool = False,
) -> LocalResult:
    """Run every hop of the route; return the final state (kept in ``out_dir``)."""
    spec = load_train_spec(folder)
    if rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    hop_runner = _DockerHop(folder, base, wheelhouse) if in_docker else _InProcessHop(folder)
    route = _Route(hop_runner, spec, stops, rounds, on_hop)
    with tempfile.TemporaryDirectory(prefix="pht-test-") as tmp:
        route.tmp = Path(tmp)
        archive = route.parallel() if parallel else route.sequential()
        final = Path(tmp) / "final"
        result = route.result
        result.files = state_codec.unpack(archive, final, route.max_bytes)
        if (final / STATE_FILE).is_file():
            result.state = json.loads((final / STATE_FILE).read_text())
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in result.files:
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(final / name, out_dir / name)
    return result


class _Route:
    """The hops of one local route; each state travels as a packed archive of declared files."""

    def __init__(
        self,
        runner: _InProcessHop | _DockerHop,
        spec: TrainSpec,
        stops: list[LocalStop],
        rounds: int,
        on_hop: HopCallback | None,
    ) -> None:
        self.runner, self.spec, self.stops, self.rounds = runner, spec, stops, rounds
        self.on_hop = on_hop
        self.max_bytes = spec.resources.max_output_mb * 1024 * 1024
        self.result = LocalResult()
        self.tmp = Path(".")

    def sequential(self) -> bytes:
        n, total = len(self.stops), len(self.stops) * self.rounds
        archive: bytes | None = None
        for index in range(total):
            ctx = Context(
                station=self.stops[index % n].station,
                round=index // n,
                hop=index,
                is_last=index == total - 1,
                stop=index % n,
                stops=n,
                rounds=self.rounds,
            )
            archive = self.hop(ctx, [] if archive is None else [archive], self.stops[index % n])
        assert archive is not None  # a route has at least one hop
        return archive

    def parallel(self) -> bytes:
        n = len(self.stops)
        aggregate: bytes | None = None
        for r in range(self.rounds):
            partials = []
            for s, stop in enumerate(self.stops):
                ctx = Context(
                    station=stop.station,
                    round=r,
                    hop=r * (n + 1) + s,
                    is_last=False,
                    stop=s,
                    stops=n,
                    rounds=self.rounds,
                )
                partials.append(self.hop(ctx, [] if aggregate is None else [aggregate], stop))
            ctx = Context(
                station="aggregator",
                round=r,
                hop=r * (n + 1) + n,
                is_last=r == self.rounds - 1,
                mode="aggregate",
                stop=n,
                stops=n,
                rounds=self.rounds,
            )
            aggregate = self.hop(ctx, partials, None)
        assert aggregate is not None
        return aggregate

    def hop(self, ctx: Context, inputs: list[bytes], stop: LocalStop | None) -> bytes:
        """Run one hop on its inputs (an aggregate's into input/<k>/); return its output."""
        work = self.tmp / f"hop-{ctx.hop}"
        input_dir, data_dir, output_dir = (work / n for n in ("input", "data", "output"))
        for d in (input_dir, data_dir, output_dir):
            d.mkdir(parents=True)
        for k, archive in enumerate(inputs):
            target = input_dir / str(k) if ctx.mode == "aggregate" else input_dir
            state_codec.unpack(archive, target, self.max_bytes)
        for name, file in (stop.data if stop is not None else {}).items():
            (data_dir / name).mkdir()
            shutil.copyfile(file, data_dir / name / f"data{file.suffix}")
        started = time.monotonic()
        self.runner.run(ctx, input_dir, data_dir, output_dir, self.spec)
        seconds = time.monotonic() - started
        files = _declared_outputs(output_dir, self.spec, ctx)
        archive = state_codec.pack(output_dir, files, self.max_bytes)
        hop = LocalHop(ctx.hop, ctx.round, ctx.station, seconds, files, ctx.mode)
        self.result.hops.append(hop)
        if self.on_hop is not None:
            self.on_hop(hop)
        shutil.rmtree(work, ignore_errors=True)
        return archive


def _declared_outputs(output_dir: Path, spec: TrainSpec, ctx: Context) -> list[str]:
    """What a station lets leave: exactly the declared files (the same check it makes)."""
    where = f"hop {ctx.hop} ({ctx.station}, round {ctx.round})"
    written = state_codec.list_state_files(output_dir)
    undeclared = sorted(set(written) - set(spec.outputs))
    if undeclared:
        raise StateInvalid(
            f"at {where} the train wrote undeclared files {undeclared}; a station would refuse "
            "them: declare them in train.toml outputs"
        )
    missing = sorted(set(spec.outputs) - set(written))
    if missing:
        raise StateInvalid(
            f"at {where} the train did not write its declared outputs {missing}; return a "
            "state from local() or write the files to ctx.output_dir"
        )
    return written


class _InProcessHop:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(
        self, ctx: Context, input_dir: Path, data_dir: Path, output_dir: Path, spec: TrainSpec
    ) -> None:
        try:
            run_train(self.folder, input_dir, data_dir, output_dir, ctx)
        except TrainCodeError as exc:
            raise TrainFailed(f"{_where(ctx)}: {exc}") from None
        except Exception as exc:  # the train's own code raised: show its traceback
            text = "".join(traceback.format_exception(exc))
            trace = train_traceback(text)
            raise TrainFailed(f"{_where(ctx)}: the train raised:\n{trace}") from None


class _DockerHop:
    """The station's runner and sandbox, on an image built here and never pushed."""

    def __init__(self, folder: Path, base: str | None, wheelhouse: Path | None) -> None:
        from station.runner import DockerRunner
        from train_builder.image import DEFAULT_BASE, build_image

        _, self.tag = build_image(folder, LOCAL_REGISTRY, base or DEFAULT_BASE, wheelhouse)
        self.runner = DockerRunner()

    def run(
        self, ctx: Context, input_dir: Path, data_dir: Path, output_dir: Path, spec: TrainSpec
    ) -> None:
        _open_for_container(input_dir.parent, output_dir)
        result = self.runner.run(
            self.tag,
            input_dir=input_dir,
            data_dir=data_dir,
            output_dir=output_dir,
            env={
                "PHT_MODE": ctx.mode,
                "PHT_STATION": ctx.station,
                "PHT_ROUND": str(ctx.round),
                "PHT_HOP": str(ctx.hop),
                "PHT_LAST_HOP": "1" if ctx.is_last else "0",
                "PHT_STOP": str(ctx.stop),
                "PHT_STOPS": str(ctx.stops),
                "PHT_ROUNDS": str(ctx.rounds),
            },
            resources=spec.resources,
        )
        if result.timed_out:
            raise TrainFailed(
                f"{_where(ctx)}: the train exceeded its timeout of {spec.resources.timeout_s}s "
                "(resources.timeout_s in train.toml)"
            )
        if result.exit_code != 0:
            raise TrainFailed(
                f"{_where(ctx)}: the container exited with code {result.exit_code}:\n"
                f"{train_traceback(result.log)}"
            )


def _open_for_container(work: Path, output_dir: Path) -> None:
    """As a station does: the container's user reads everything, writes only the output."""
    for path in work.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    work.chmod(0o755)
    try:
        os.chown(output_dir, CONTAINER_UID, CONTAINER_UID)
        output_dir.chmod(0o700)
    except PermissionError:  # not root: let the container's user write anyway
        output_dir.chmod(0o777)


def _where(ctx: Context) -> str:
    return f"hop {ctx.hop} at {ctx.station} (round {ctx.round})"


def train_traceback(text: str) -> str:
    """The last traceback in ``text``, keeping only frames in the train's own train.py."""
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (")]
    if not starts:
        return "\n".join(f"  {line}" for line in lines[-20:])
    body = lines[starts[-1] + 1 :]
    kept: list[str] = []
    keep_frame = False
    for line in body:
        if line.startswith("  File "):
            keep_frame = f'/{CODE_FILE}"' in line or line.startswith(f'  File "{CODE_FILE}"')
            if keep_frame:
                kept.append('  File "train.py"' + line.split('"', 2)[2])
        elif line.startswith("    "):
            if keep_frame:
                kept.append(line)
        else:
            kept.append(line)  # the exception itself
    return "\n".join(["Traceback (train.py frames only):", *kept])
