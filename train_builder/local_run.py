"""``pht-train test``: run a train's whole route on this machine, one data file per stop.

Sequential (each stop in turn, round after round) or parallel (``--parallel``: each round
every stop runs ``local`` on the previous aggregate, then ``aggregate`` joins the partial
states, in stop order, as the aggregator station of a parallel route would).

Each hop goes through the same code a station's container runs (``trains.runtime``):
in-process by default (seconds), or in real containers with the station's sandbox
(``in_docker=True``); ``local_hop.py`` holds both ways. Between hops the state travels as
a station would pass it on: only the declared output files, packed and unpacked by the
state codec. No network, no central.

The data is the researcher's own sample data, so a train that raises shows its traceback
(only the frames of the train's own ``train.py``, none of pht's internals).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.config import DisclosurePolicy
from train_builder.local_hop import DockerHop, InProcessHop
from trains import state_codec
from trains.errors import ConfigError, DisclosureRefused, StateInvalid
from trains.published import PUBLISHED_FILE
from trains.runtime.core import STATE_FILE, Context
from trains.train_spec import TrainSpec, load_train_spec

if TYPE_CHECKING:
    import pandas as pd


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
    converged: bool = False  # the train converged and ended the route at this hop


@dataclass
class LocalResult:
    hops: list[LocalHop] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None
    # published.json after the stations' default rules: quantities and the release report
    published: dict[str, Any] | None = None
    # in-process only: what the train returned at the last hop, before only its published
    # quantities leave (pht-train test shows both; a station releases only the latter)
    finalized: dict[str, Any] | None = None


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


def stops_from_frames(
    frames: Sequence[pd.DataFrame], dataset: str, folder: Path, prefix: str = "site"
) -> list[LocalStop]:
    """One stop per DataFrame, named ``<prefix>-0``, ``-1``, ...: each frame is written to
    ``folder`` as a CSV file and handed to the train as ``dataset`` (for notebooks, tests
    and benchmarks that hold each site's rows in memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    stops = []
    for i, frame in enumerate(frames):
        file = folder / f"{prefix}-{i}.csv"
        frame.to_csv(file, index=False)
        stops.append(LocalStop(f"{prefix}-{i}", {dataset: file}))
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
    keep_hops: Path | None = None,
    disclosure: DisclosurePolicy | None = None,
) -> LocalResult:
    """Run every hop of the route; return the final state (kept in ``out_dir``). With
    ``keep_hops``, every hop's output is also kept, unpacked, in ``keep_hops/<hop>/``."""
    spec = load_train_spec(folder)
    if rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    hop_runner = DockerHop(folder, base, wheelhouse) if in_docker else InProcessHop(folder)
    route = _Route(hop_runner, spec, stops, rounds, on_hop, keep_hops)
    route.disclosure = disclosure or DisclosurePolicy()
    with tempfile.TemporaryDirectory(prefix="pht-test-") as tmp:
        route.tmp = Path(tmp)
        try:
            archive = route.parallel() if parallel else route.sequential()
        finally:
            if isinstance(hop_runner, DockerHop):
                hop_runner.close()
        final = Path(tmp) / "final"
        result = route.result
        result.files = state_codec.unpack(archive, final, route.max_bytes)
        if (final / STATE_FILE).is_file():
            result.state = json.loads((final / STATE_FILE).read_text())
        if (final / PUBLISHED_FILE).is_file():
            result.published = json.loads((final / PUBLISHED_FILE).read_text())
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
        runner: InProcessHop | DockerHop,
        spec: TrainSpec,
        stops: list[LocalStop],
        rounds: int,
        on_hop: HopCallback | None,
        keep_hops: Path | None = None,
    ) -> None:
        self.runner, self.spec, self.stops, self.rounds = runner, spec, stops, rounds
        self.on_hop, self.keep_hops = on_hop, keep_hops
        self.max_bytes = spec.resources.max_output_mb * 1024 * 1024
        self.result = LocalResult()
        self.tmp = Path(".")
        self.disclosure = DisclosurePolicy()

    def sequential(self) -> bytes:
        n, total = len(self.stops), len(self.stops) * self.rounds
        archive: bytes | None = None
        for index in range(total):
            last = index == total - 1
            ctx = Context(
                station=self.stops[index % n].station,
                round=index // n,
                hop=index,
                is_last=last,
                stop=index % n,
                stops=n,
                rounds=self.rounds,
                may_end=index % n == n - 1 and not last,  # as trains.early_end rules
            )
            archive = self.hop(ctx, [] if archive is None else [archive], self.stops[index % n])
            if self.result.hops[-1].converged:
                break
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
                    parallel=True,
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
                may_end=r < self.rounds - 1,
                parallel=True,
            )
            aggregate = self.hop(ctx, partials, None)
            if self.result.hops[-1].converged:
                break
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
        ran = self.runner.run(ctx, input_dir, data_dir, output_dir, self.spec)
        converged = ran.converged
        released = ctx.is_last or converged  # the last hop, or where the route ended early
        if released and ran.state is not None:
            self.result.finalized = ran.state
        seconds = time.monotonic() - started
        files = _declared_outputs(output_dir, self.spec, ctx, released)
        if released:  # the release point: the same typed rules a station applies
            files = release_locally(output_dir, files, self.disclosure)
        archive = state_codec.pack(output_dir, files, self.max_bytes)
        if self.keep_hops is not None:
            state_codec.unpack(archive, self.keep_hops / str(ctx.hop), self.max_bytes)
        hop = LocalHop(ctx.hop, ctx.round, ctx.station, seconds, files, ctx.mode, converged)
        self.result.hops.append(hop)
        if self.on_hop is not None:
            self.on_hop(hop)
        shutil.rmtree(work, ignore_errors=True)
        return archive


def _declared_outputs(
    output_dir: Path, spec: TrainSpec, ctx: Context, release: bool
) -> list[str]:
    """What a station lets leave: exactly the declared files (the same check it makes),
    and ``published.json`` at the release point."""
    where = f"hop {ctx.hop} ({ctx.station}, round {ctx.round})"
    written = state_codec.list_state_files(output_dir)
    allowed = {*spec.outputs, PUBLISHED_FILE} if release else set(spec.outputs)
    undeclared = sorted(set(written) - allowed)
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


def release_locally(output_dir: Path, files: list[str], policy: DisclosurePolicy) -> list[str]:
    """The stations' release rules (default: their default ``[policy.disclosure]``),
    in-process on the researcher's own sample data: ``published.json`` gets the same
    ``release`` report a station writes, so ``pht-train test`` shows what would be suppressed
    and which files a station would hold as untyped."""
    from station.disclosure_rules import Rules
    from station.output_parse import _shape
    from station.release_check import check_release

    rules = Rules(policy.k, policy.min_df, policy.nk_k, policy.p_ratio, policy.zeros_disclosive)
    answer = check_release(
        output_dir, files, rules, True, lambda p: json.loads(p.read_text()), _shape
    )
    if "refused" in answer:
        raise DisclosureRefused(f"a station would refuse this result: {answer['refused']}")
    return state_codec.list_state_files(output_dir)
