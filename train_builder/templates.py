"""``pht-train init``: a new train folder from one of the reference trains.

Templates are discovered, not listed: every ``trains/reference/<name>/train.toml`` is one,
so a reference train added to the repository is a template at once.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import trains
from trains.errors import ConfigError
from trains.manifest import NAME_RE
from trains.train_spec import CODE_FILE, TRAIN_FILE

REFERENCE = Path(trains.__file__).resolve().parent / "reference"
MAX_SAMPLE_SITES = 3

README = """\
# {name}

A Personal Health Train, started from the `{template}` template ({description}).

## What to write

`train.py` holds plain functions; the runtime calls them at every stop:

- `local(data, state, ctx) -> state` runs at each station. `data["{dataset}"]` is that
  station's data as a pandas DataFrame; `state` is the dict the previous stop returned
  (`None` at the first stop). Return the new state: a dict of numbers, strings, lists or
  numpy arrays. It travels, sealed, to the next stop only.
- `finalize(state, ctx) -> state` (optional) runs after `local` at the very last stop, e.g.
  to turn sufficient statistics into the published result.

`ctx` tells the function where it is: `ctx.station`, `ctx.round`, `ctx.hop`, `ctx.stop`,
`ctx.stops`, `ctx.rounds`, `ctx.is_last`, `ctx.is_round_end`, and `ctx.params` (the
`[parameters]` table of `train.toml`). Never return row-level data: only aggregates leave.

`train.toml` declares the datasets the train reads, the only files it may output
(`outputs`), the resources it needs and its parameters. Stations refuse anything else.

## More than one output file

The returned state becomes `state.json`. To send more (a table, a figure), declare each
file in `outputs`, e.g. `outputs = ["state.json", "summary.csv"]`, and write it into
`ctx.output_dir` (`(ctx.output_dir / "summary.csv").write_text(...)`). Write every declared
file at every hop, not only in `finalize`: each station checks every hop's output against
`outputs`, and a declared file missing at any hop, the first one included, fails that hop
(and the train); `pht-train test` fails the same way, naming the hop and the file. Each
hop's files replace the previous hop's, and you receive the last hop's. The next hop's
`local` gets only the state: put whatever the next station computes with in it.

## The container contract

At a station the train runs in a container with no network, a read-only file system and
a non-root user: the previous state is in `/pht/input/` (read-only), each dataset in
`/pht/data/<dataset>/` (read-only), and the new state goes to `/pht/output/`; only the
declared outputs leave. Exit code 0 means success. The runtime does all of this for you.

## Try it

```sh
pht-train test {folder} {data_flags}
pht-train test {folder} {data_flags} --in-docker   # the same, in real containers
pht-train build {folder}
pht-train submit {folder} --route STATION1,STATION2
```

The files in `sample/` are made-up sample data for local tests; they never leave this
folder (only `train.toml` and the `*.py` files go into the image).
"""


@dataclass(frozen=True)
class Template:
    name: str
    folder: Path
    description: str
    datasets: list[str]


def templates() -> dict[str, Template]:
    """Every reference train that has a train.toml and a train.py, by name."""
    found: dict[str, Template] = {}
    for toml_path in sorted(REFERENCE.glob(f"*/{TRAIN_FILE}")):
        folder = toml_path.parent
        if not (folder / CODE_FILE).is_file():
            continue
        try:
            raw = tomllib.loads(toml_path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue  # a half-written reference train is not offered
        info = raw.get("train", {})
        found[folder.name] = Template(
            name=folder.name,
            folder=folder,
            description=str(info.get("description", "")),
            datasets=[str(d) for d in raw.get("datasets", [])],
        )
    return found


def scaffold(target: Path, template_name: str) -> list[Path]:
    """Create ``target`` from a template; return the files written."""
    available = templates()
    if template_name not in available:
        listing = ", ".join(sorted(available)) or "(none found)"
        raise ConfigError(f"unknown template {template_name!r}; available templates: {listing}")
    name = target.name
    if not re.match(NAME_RE, name):
        raise ConfigError(
            f"{name!r} cannot name a train: use lower-case letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another name or remove it first")
    template = available[template_name]
    target.mkdir(parents=True)
    written = [target / CODE_FILE, target / TRAIN_FILE]
    for code in sorted(template.folder.glob("*.py")):  # train.py and any helper module
        shutil.copyfile(code, target / code.name)
    (target / TRAIN_FILE).write_text(_renamed(template.folder / TRAIN_FILE, name))
    samples = sorted((template.folder / "sample").glob("*.csv"))[:MAX_SAMPLE_SITES]
    if samples:
        (target / "sample").mkdir()
        for sample in samples:
            shutil.copyfile(sample, target / "sample" / sample.name)
            written.append(target / "sample" / sample.name)
    data_flags = " ".join(f"--data {target}/sample/{s.name}" for s in samples[:2])
    (target / "README.md").write_text(
        README.format(
            name=name,
            template=template.name,
            description=template.description or "no description",
            dataset=template.datasets[0] if template.datasets else "<dataset>",
            folder=target,
            data_flags=data_flags or "--data site-a.csv --data site-b.csv",
        )
    )
    written.append(target / "README.md")
    return written


def _renamed(toml_path: Path, name: str) -> str:
    """The template's train.toml with ``[train] name`` set to the new train's name."""
    lines = toml_path.read_text().splitlines(keepends=True)
    table = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped
        elif table == "[train]" and re.match(r"name\s*=", stripped):
            lines[i] = f'name = "{name}"\n'
            break
    return "".join(lines)
