"""A route of in-process hops with the stations' real masking between them.

Each hop does what ``station.hop`` does around the container, minus Docker, central and
sealing: the station removes or checks masks on its input (``unmask_input``), the runtime
runs the train (``trains.runtime.core.run_train``, the code the image runs), the station
masks the output (``mask_output``). Every station has its own real X25519 key, pinned in a
real manifest. What each station receives is kept, so tests can play a curious station.
Shared by tests/test_secure_aggregation*.py and benchmarks/.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from station import secure_masking
from trains.early_end import early_end_refused
from trains.keys import Identity
from trains.manifest import Hop, Image, Manifest, Route, Stop, expiry_from_now
from trains.runtime.core import Context, read_train_toml, run_train
from trains.train_spec import load_train_spec

DIGEST = "sha256:" + "ab" * 32
Tamper = Callable[[Hop, Path], None]


@dataclass
class SecureRun:
    manifest: Manifest
    identities: dict[str, Identity]
    received: dict[int, dict[str, bytes]] = field(default_factory=dict)  # hop -> file -> bytes
    sent: dict[int, dict[str, bytes]] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    station_seconds: float = 0.0  # in the stations' masking hooks, all hops
    ended_at: int | None = None  # the hop where a converged train ended the route


def make_route(
    spec_outputs: list[str], stations: int, rounds: int, parallel: bool, researcher: Identity
) -> tuple[Manifest, dict[str, Identity]]:
    identities = {f"site-{i}": Identity.generate(f"site-{i}") for i in range(stations)}
    stops = [Stop(station=i.public) for i in identities.values()]
    aggregator = None
    if parallel:
        identities["aggregator"] = Identity.generate("aggregator")
        aggregator = Stop(station=identities["aggregator"].public)
    route = Route(
        mode="parallel" if parallel else "sequential",
        rounds=rounds,
        stops=stops,
        aggregator=aggregator,
    )
    created, expires = expiry_from_now(1)
    manifest = Manifest(
        name="secure-test",
        version="0.1.0",
        researcher=researcher.public,
        image=Image(repository="127.0.0.1:5000/pht/secure-test", digest=DIGEST),
        route=route,
        outputs=spec_outputs,
        created_at=created,
        expires_at=expires,
    )
    return manifest, identities


def run_secure_route(
    train_dir: Path,
    frames: list[pd.DataFrame],
    rounds: int = 1,
    parallel: bool = False,
    tamper: Tamper | None = None,
    masking: bool = True,
    skip: frozenset[int] = frozenset(),
) -> SecureRun:
    """Run every hop of the route; ``tamper(hop, input_dir)`` may alter what a hop
    receives (before its station looks at it); ``masking=False`` skips the stations'
    masks (the control that shows an attack test can fail); a hop in ``skip`` passes its
    input on unchanged, as a station that refused does where the route allows skips."""
    spec = load_train_spec(train_dir)
    dataset = read_train_toml(train_dir).get("datasets", ["cohort"])[0]
    manifest, identities = make_route(
        spec.outputs, len(frames), rounds, parallel, Identity.generate("researcher")
    )
    run = SecureRun(manifest, identities)
    n = len(frames)
    with tempfile.TemporaryDirectory(prefix="pht-secure-route-") as tmp:
        outputs: dict[int, Path] = {}
        for hop in manifest.hops():
            me = identities[hop.stop.name]
            work = Path(tmp) / f"hop-{hop.index}"
            input_dir, data_dir, output_dir = (work / d for d in ("input", "data", "output"))
            for folder in (input_dir, data_dir, output_dir):
                folder.mkdir(parents=True)
            for k, source in enumerate(hop.inputs):
                target = input_dir / str(k) if hop.kind == "aggregate" else input_dir
                shutil.copytree(outputs[source], target, dirs_exist_ok=True)
            if tamper is not None:
                tamper(hop, input_dir)
            run.received[hop.index] = _files(input_dir)
            if hop.index in skip:
                shutil.copytree(input_dir, output_dir, dirs_exist_ok=True)
                run.sent[hop.index] = _files(output_dir)
                outputs[hop.index] = output_dir
                continue
            started = time.perf_counter()
            if masking:
                secure_masking.unmask_input(manifest, hop, me.sealing, input_dir)
            run.station_seconds += time.perf_counter() - started
            if hop.kind == "local":
                (data_dir / dataset).mkdir()
                frames[hop.position].to_csv(data_dir / dataset / "data.csv", index=False)
            ctx = Context(
                station=hop.stop.name,
                round=hop.round,
                hop=hop.index,
                is_last=hop.is_last,
                mode=hop.kind,
                stop=hop.position,
                stops=n,
                rounds=rounds,
                parallel=parallel,
                may_end=early_end_refused(manifest, hop.index) is None,
            )
            ran = run_train(train_dir, input_dir, data_dir, output_dir, ctx)
            run.state = ran.state
            started = time.perf_counter()
            if masking:
                secure_masking.mask_output(manifest, hop, me.sealing, output_dir)
            run.station_seconds += time.perf_counter() - started
            run.sent[hop.index] = _files(output_dir)
            outputs[hop.index] = output_dir
            if ran.converged:  # the route ends here (trains/early_end.py)
                run.ended_at = hop.index
                break
    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def secure_copy(train: Path, folder: Path, secure: bool = True, **params: Any) -> Path:
    """A copy of a train folder with ``secure = true`` (or false) and [parameters]
    entries replaced or added."""

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(train / "train.py", folder / "train.py")
    text = (train / "train.toml").read_text()
    text = f"secure = {str(secure).lower()}\n" + text
    if params:
        lines = [f"{k} = {_toml(v)}" for k, v in params.items()]
        head, _, tail = text.partition("[parameters]\n")
        kept = [ln for ln in tail.splitlines() if ln.split("=")[0].strip() not in params]
        text = head + "[parameters]\n" + "\n".join(lines + kept) + "\n"
    (folder / "train.toml").write_text(text)
    return folder


def _toml(value: Any) -> str:
    import json

    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)
