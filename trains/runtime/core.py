"""Read ``/pht/input`` and ``/pht/data/<dataset>``, call the train, write ``/pht/output``.

A train is a ``train.py`` with plain functions:

* ``local(data, state, ctx) -> state`` runs at each stop; ``data`` maps each requested
  dataset to a pandas DataFrame, ``state`` is the dict the previous stop returned
  (``None`` at the first hop);
* ``aggregate(states, ctx) -> state`` runs at the aggregator stop of a parallel round:
  ``states`` lists the partial states of the round's stops, in route order (each a dict,
  read from ``/pht/input/<i>/state.json``); its result goes to every stop of the next
  round, or to the researcher after the last round;
* ``finalize(state, ctx) -> state`` (optional) runs after ``local`` (or ``aggregate``) at
  the very last hop, e.g. to turn sufficient statistics into the published result.

The returned dict is written as ``state.json``; numpy values become plain JSON numbers and
NaN becomes null. At the release hop a train that published typed quantities
(``ctx.publish``, see ``trains.runtime.publish``) releases only those, as
``published.json``: its returned state is then written as ``{}``. A train may also write
declared files to ``ctx.output_dir`` itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from trains.runtime import secure
from trains.runtime.publish import PUBLISHED_FILE, Publisher
from trains.runtime.refusal import Refusal

STATE_FILE = "state.json"


class TrainCodeError(Exception):
    """The train folder or its functions do not follow the contract."""


@dataclass(frozen=True)
class Context:
    """Where the train is; handed to every train function."""

    station: str = "local"
    round: int = 0
    hop: int = 0
    is_last: bool = True
    mode: str = "local"
    output_dir: Path = field(default=Path("/pht/output"))
    params: dict[str, Any] = field(default_factory=dict)
    stop: int = 0  # this stop's position in the round, 0-based
    stops: int = 1  # stops per round
    rounds: int = 1
    may_end: bool = False  # this hop ends its round (not the last): converged() may end the route
    # typed outputs (trains.runtime.publish): written as published.json at the release hop
    publish: Publisher = field(default_factory=Publisher)
    parallel: bool = False  # a parallel route: its release point is the aggregator
    sums: secure.SecureSums | None = None  # the secure parts (trains.runtime.secure)

    @property
    def is_round_end(self) -> bool:
        """True at the last stop of a round: where an iterative train takes its step."""
        return self.mode == "aggregate" or self.stop == self.stops - 1

    @classmethod
    def from_env(cls) -> Context:
        env = os.environ
        return cls(
            station=env.get("PHT_STATION", "local"),
            round=int(env.get("PHT_ROUND", "0")),
            hop=int(env.get("PHT_HOP", "0")),
            is_last=env.get("PHT_LAST_HOP", "1") == "1",
            mode=env.get("PHT_MODE", "local"),
            stop=int(env.get("PHT_STOP", "0")),
            stops=int(env.get("PHT_STOPS", "1")),
            rounds=int(env.get("PHT_ROUNDS", "1")),
            may_end=env.get("PHT_MAY_END", "0") == "1",
            parallel=env.get("PHT_ROUTE") == "parallel",
        )


# Compiled or binary modules the admin cannot review as source (station/inspect.py shows
# only text): Python would import them, or a shipped .pyc in place of the reviewed train.py.
UNREVIEWABLE_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd")


def load_train_module(train_dir: Path) -> ModuleType:
    """Import ``train.py``, after refusing a folder holding code that is not source."""
    for found in sorted(train_dir.rglob("*")):
        if found.name == "__pycache__" or found.name.endswith(UNREVIEWABLE_SUFFIXES):
            what = "__pycache__" if found.name == "__pycache__" else "compiled module"
            raise TrainCodeError(
                f"the train folder holds a {what} ({found.relative_to(train_dir)}), code an "
                "admin cannot review as source; build the image from source files only"
            )
    sys.dont_write_bytecode = True  # a second run in the same folder must not refuse itself
    path = train_dir / "train.py"
    spec = importlib.util.spec_from_file_location("pht_train", path)
    if spec is None or spec.loader is None:
        raise TrainCodeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pht_train"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "local", None)):
        raise TrainCodeError(f"{path} defines no function local(data, state, ctx)")
    return module


def read_train_toml(train_dir: Path) -> dict[str, Any]:
    with (train_dir / "train.toml").open("rb") as handle:
        return tomllib.load(handle)


def load_dataset(folder: Path) -> pd.DataFrame:
    """All CSV and Parquet files of one dataset folder, as one DataFrame."""
    frames = [pd.read_csv(p) for p in sorted(folder.glob("*.csv"))]
    frames += [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    if not frames:
        raise Refusal(
            "missing_dataset", f"dataset folder {folder.name} holds no CSV or Parquet file"
        )
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def load_state(input_dir: Path) -> dict[str, Any] | None:
    path = input_dir / STATE_FILE
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise TrainCodeError(f"{STATE_FILE} of the input state is not a JSON object")
    return loaded


def load_partial_states(input_dir: Path) -> list[dict[str, Any] | None]:
    """An aggregate hop's inputs: one folder per partial state, ``/pht/input/0``, ``1``, ...
    in the order of the route's stops."""
    folders = sorted(
        (p for p in input_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    return [load_state(folder) for folder in folders]


def to_json_value(value: Any) -> Any:
    """Plain JSON for what trains naturally return: numpy scalars/arrays, NaN, tuples."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TrainCodeError(
        f"the state holds a {type(value).__name__}, which JSON cannot carry; "
        "return dicts, lists, numbers, strings or numpy arrays"
    )


class Ran(NamedTuple):
    """What one hop produced: the state written (None: none), and whether the train ended
    the route here because it has converged (``trains/early_end.py``)."""

    state: dict[str, Any] | None
    converged: bool = False


def run_train(
    train_dir: Path, input_dir: Path, data_dir: Path, output_dir: Path, ctx: Context
) -> Ran:
    """One hop: the whole contract between a station's container and the train's code."""
    module = load_train_module(train_dir)
    toml = read_train_toml(train_dir)
    # the aggregator stop of a parallel round reads partial states, never data
    names = [] if ctx.mode == "aggregate" else toml.get("datasets", [])
    data = {name: load_dataset(data_dir / name) for name in names}
    params = dict(toml.get("parameters", {}))
    release = ctx.mode == "aggregate" or (not ctx.parallel and ctx.stop == ctx.stops - 1)
    sums = secure.start(bool(toml.get("secure", False)), release, ctx.mode, input_dir)
    ctx = dataclasses.replace(ctx, output_dir=output_dir, params=params, sums=sums)
    if ctx.mode == "aggregate":
        aggregate = getattr(module, "aggregate", None)
        if not callable(aggregate):
            raise TrainCodeError(
                "this route has an aggregator stop, but train.py defines no aggregate(states, ctx)"
            )
        state = aggregate(load_partial_states(input_dir), ctx)
    else:
        state = module.local(data, load_state(input_dir), ctx)
    converged = _ends_route(module, state, ctx)
    if converged:  # the route ends here: this hop is the release point, as the last is
        ctx = dataclasses.replace(ctx, is_last=True)
    finalize = getattr(module, "finalize", None)
    if ctx.is_last and callable(finalize):
        state = finalize(state, ctx)
    try:
        secure.finish(sums, ctx.mode, output_dir)
    except secure.SecureStateError as exc:
        raise TrainCodeError(str(exc)) from None
    if state is None:
        return Ran(None, converged)
    if not isinstance(state, dict):
        raise TrainCodeError(f"local() returned a {type(state).__name__}; return a dict")
    plain = to_json_value(state)
    written = plain
    if ctx.is_last and ctx.publish.quantities:
        # at the release hop only the typed quantities leave; the state stays here (and is
        # returned to an in-process caller such as pht-train test)
        text = json.dumps(ctx.publish.document(), sort_keys=True, allow_nan=False)
        (output_dir / PUBLISHED_FILE).write_text(text)
        written = {}
    text = json.dumps(written, sort_keys=True, allow_nan=False)
    (output_dir / STATE_FILE).write_text(text)
    return Ran(plain, converged)


def _ends_route(module: ModuleType, state: Any, ctx: Context) -> bool:
    """At a hop that may end the route (the station says so: it ends its round and is not
    the last), ask the train's ``converged(state, ctx)`` whether more rounds would change
    nothing."""
    converged = getattr(module, "converged", None)
    if not ctx.may_end or not callable(converged):
        return False
    answer = converged(state, ctx)
    if not isinstance(answer, bool):
        raise TrainCodeError(f"converged() returned a {type(answer).__name__}; return a bool")
    return answer
