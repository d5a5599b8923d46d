"""The release point: typed disclosure rules on what goes to the researcher (issue 12).

The station that runs a route's last hop (sequential, or the aggregator's last output of a
parallel route) calls :func:`release_output` on the container's output, after the checks
every hop gets (declared files, size) and before sealing:

1. the child parser (``station.output_parse``, mode "release", see
   ``station.release_check``) reads ``published.json`` bounded, validates it strictly,
   applies ``station.disclosure_rules`` and rewrites it with a ``release`` section listing
   every suppression and its rule (it travels sealed to the researcher; ``pht-train result``
   shows it);
2. untyped files (anything but ``published.json`` and an empty ``state.json``) go to the
   station's policy: ``untyped = "hold"`` (default) keeps the output for the admin's manual
   release, ``"refuse"`` fails the hop;
3. then (not here) differential privacy, if the station's policy asks for it: the dp work
   (issue 12 item 6) calls ``privatize_at_release`` in ``station.outcome.control_and_pack``
   right after ``check_output``, on the ``published.json`` rewritten here, before packing.

The daemon sees names, types, shapes and counts of suppressions, never a value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from station.config import DisclosurePolicy
from station.parse_child import run_parser
from trains.errors import DisclosureRefused, StateInvalid
from trains.published import PUBLISHED_FILE


class ReleaseRefused(DisclosureRefused):
    """The release point refused the output; ``fixed`` is what central and the researcher
    hear (fixed words: the detailed message quotes names the train chose, for the log)."""

    def __init__(self, message: str, fixed: str) -> None:
        super().__init__(message)
        self.fixed = fixed


INVALID = (
    "published.json does not follow the typed output format (a count that is not a "
    "non-negative integer, a number that is not finite, an unknown field or type); publish "
    "through ctx.publish and resubmit"
)
UNTYPED = (
    "the output holds untyped files and this station releases typed outputs only "
    '(untyped = "refuse"); publish results with ctx.publish and resubmit'
)


@dataclass(frozen=True)
class ReleaseSummary:
    """What the admin's summary and the audit log show of a release: never a value."""

    quantities: list[dict[str, str]] = field(default_factory=list)  # name, type, shape
    suppressed: int = 0
    untyped: list[dict[str, str]] = field(default_factory=list)  # name, shape
    held: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReleaseSummary:
        return cls(**raw)


def release_output(
    output_dir: Path, written: list[str], policy: DisclosurePolicy
) -> ReleaseSummary:
    """Apply the release point's rules to ``output_dir`` in place (see the module docstring).

    Raises DisclosureRefused for untyped files under the refuse policy or an invalid
    ``published.json``; StateInvalid if the checker dies or times out."""
    request = {
        "mode": "release",
        "folder": str(output_dir),
        "files": written,
        "rules": {
            "k": policy.k,
            "min_df": policy.min_df,
            "nk_k": policy.nk_k,
            "p_ratio": policy.p_ratio,
            "zeros_disclosive": policy.zeros_disclosive,
        },
        "hold_untyped": policy.untyped == "hold",
    }
    answer = _child(request)
    if "refused" in answer:
        raise ReleaseRefused(str(answer["refused"]), INVALID)
    raw = answer["release"]
    summary = ReleaseSummary(
        quantities=raw["quantities"],
        suppressed=int(raw["suppressed"]),
        untyped=raw["untyped"],
        held=bool(raw["untyped"]) and policy.untyped == "hold",
    )
    if summary.untyped and policy.untyped == "refuse":
        names = ", ".join(u["name"] for u in summary.untyped)
        raise ReleaseRefused(
            f"the output holds untyped files ({names}) and this station releases typed outputs "
            "only; publish results with ctx.publish (docs/researcher.md) and resubmit",
            UNTYPED,
        )
    return summary


def _child(request: dict[str, Any]) -> dict[str, Any]:
    child = run_parser(request, f"checking {PUBLISHED_FILE} took too long; publish less")
    try:
        answer = json.loads(child.stdout.decode("utf-8", errors="replace").splitlines()[0])
    except (ValueError, IndexError):
        answer = None
    if child.returncode != 0 or not isinstance(answer, dict):
        raise StateInvalid(
            f"the output could not be checked for release within the station's limits (the "
            f"checker ended with exit code {child.returncode}); publish less"
        )
    return answer
