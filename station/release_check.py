"""The release point's checks on a train's output, run inside the bounded child parser.

``station.output_parse`` hands a request with ``"mode": "release"`` here, after lowering its
own limits. This reads ``published.json`` with the parser's bounds, validates it strictly
(``trains.published``), applies the rules (``station.disclosure_rules``) and rewrites it with
a ``release`` section the researcher reads: the rules' parameters, every suppression with its
rule, and the untyped files. Every other file is *untyped*, except a ``state.json`` that
is ``{}`` or ``null`` (what the runtime writes when a train publishes typed quantities).

It answers with one JSON line to the daemon: names, types, shapes and how many parts were
suppressed; never a value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from station.disclosure_rules import Note, Rules, apply_rules
from trains.published import (
    PUBLISHED_FILE,
    FrequencyTable,
    InvalidPublished,
    MagnitudeTable,
    Quantity,
    Regression,
    SurvivalCurve,
    to_document,
)
from trains.published_read import from_document

EMPTY_STATE_BYTES = 64  # a state.json of "{}" or "null" (with whitespace) is not untyped


def check_release(
    folder: Path, names: list[str], rules: Rules, hold_untyped: bool, load: Any, shape: Any
) -> dict[str, Any]:
    """``{"release": summary}`` or ``{"refused": message}``; rewrites published.json.

    ``load`` and ``shape`` are output_parse's bounded JSON reader and shape summariser."""
    untyped = [n for n in names if n != PUBLISHED_FILE and not _empty_state(folder / n, n)]
    quantities: list[Quantity] = []
    notes: list[Note] = []
    if PUBLISHED_FILE in names:
        try:
            quantities = from_document(load(folder / PUBLISHED_FILE))
        except InvalidPublished as exc:
            return {"refused": f"{PUBLISHED_FILE} is not valid: {exc}"}
        except Exception as exc:  # NotSummarised: beyond the parser's bounds
            return {"refused": f"{PUBLISHED_FILE} cannot be checked: {exc}"}
        quantities, notes = apply_rules(quantities, rules)
    document = to_document(quantities)
    document["release"] = {
        "rules": {
            "k": rules.k,
            "min_df": rules.min_df,
            "nk_k": rules.nk_k,
            "p_ratio": rules.p_ratio,
            "zeros_disclosive": rules.zeros_disclosive,
        },
        "suppressed": [note_dict(n) for n in notes],
        "untyped": untyped,
        "held_for_manual_release": bool(untyped) and hold_untyped,
    }
    (folder / PUBLISHED_FILE).write_text(json.dumps(document, sort_keys=True) + "\n")
    return {
        "release": {
            "quantities": [describe(q) for q in quantities],
            "suppressed": len(notes),
            "untyped": [{"name": n, "shape": _safe_shape(shape, folder / n)} for n in untyped],
        }
    }


def note_dict(note: Note) -> dict[str, str]:
    return {"quantity": note.quantity, "what": note.what, "rule": note.rule, "action": note.action}


def describe(q: Quantity) -> dict[str, str]:
    """Type and shape of one quantity, for the admin's summary: never a value or label."""
    if isinstance(q, FrequencyTable | MagnitudeTable):
        shape = f"{len(q.rows)} x {len(q.columns)} cells"
    elif isinstance(q, SurvivalCurve):
        shape = f"{len(q.times)} steps"
    elif isinstance(q, Regression):
        shape = f"{len(q.terms)} terms"
    elif hasattr(q, "weights"):
        shape = f"{len(q.weights)} weights"
    else:
        shape = "1 number"
    return {"name": q.name, "type": q.type, "shape": shape}


def _empty_state(path: Path, name: str) -> bool:
    """An empty ``state.json`` (the runtime writes ``{}`` when the train publishes), or a
    secure train's spent ``secure.json`` (no parts left: they were unmasked and summed at
    the round's last stop) carries nothing: not untyped."""
    if name not in ("state.json", "secure.json") or path.stat().st_size > EMPTY_STATE_BYTES * 2:
        return False
    try:
        value = json.loads(path.read_bytes())
    except ValueError:
        return False
    if name == "state.json":
        return value in ({}, None)
    return isinstance(value, dict) and value.get("parts") == {} and not value.get("contributions")


def _safe_shape(shape: Any, path: Path) -> str:
    try:
        return str(shape(path, path.suffix.lower()))
    except Exception:  # beyond the parser's bounds: the name and type say enough
        return f"{path.suffix.lstrip('.') or 'plain'} file, not summarised"
