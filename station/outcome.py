"""What a hop's run tells the world outside the station: a category, never the train's words.

The train has read patient data, so anything it chooses that leaves the station outside the
sealed state bypasses disclosure control: an exit code, its log, the name of a file it
wrote, a size, how many of its cells were small. A failed run is therefore reported as one
fixed sentence per category (``station.runner.RunResult.failure``: failed, timed out, out
of memory, output too large, refused with a code of the runtime's fixed vocabulary); an
output that breaks a disclosure rule as the rule it broke. The details stay in the hop's
log at the station. What remains is the choice among these categories: a few bits per hop
(docs/researcher.md, "What a failed hop tells you").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import docker.errors
import requests.exceptions

from station.config import StationConfig
from station.disclosure import Disclosure, check_output
from station.privacy import NotCovered
from station.privacy_release import privatize_at_release
from station.release import ReleaseRefused
from station.runner import RunResult
from station.verify import VerifiedHop
from trains import state_codec
from trains.early_end import early_end_refused
from trains.errors import (
    BudgetExceeded,
    DisclosureRefused,
    PhtError,
    SealError,
    StateInvalid,
    StateTooLarge,
    TrainFailed,
    TrainRefused,
)
from trains.keys import PublicIdentity
from trains.manifest import Manifest, Resources
from trains.runtime.refusal import CONTRACT_BROKEN
from trains.sealing import Digests
from trains.statepipe import SinkError, pack_and_seal

T = TypeVar("T")


def check_result(result: RunResult, resources: Resources, station: str) -> None:
    """A failed run ends the hop with its category's fixed sentence (``RunResult.failure``):
    the exit code and the log stay here, as anything the train chose would carry data."""
    message = result.failure(resources)
    if message is None:
        return
    if result.refusal is not None:
        raise TrainRefused(message)
    raise TrainFailed(f"{message}; its log stays at station {station} (ask the station admin)")


def ends_route(result: RunResult, manifest: Manifest, index: int) -> bool:
    """True when the train converged at a hop that may end the route (trains/early_end.py);
    a train that claims it where the route may not end breaks the runtime's contract (the
    station told it, in ``PHT_MAY_END``, that it may not)."""
    if not result.converged:
        return False
    if early_end_refused(manifest, index) is not None:
        raise TrainFailed(CONTRACT_BROKEN)
    return True


def contained(run: Callable[[], T], hop_log: Path) -> T:
    """Run the container and copy its output out. Copying writes names the train chose on
    the station's disk, so an error there (a path too long for the host, say) would quote
    one: it goes to the hop's log, and the hop fails with a fixed sentence. Docker's own
    errors and the station's PhtErrors pass through (``station.hop`` sorts them)."""
    try:
        return run()
    except (PhtError, docker.errors.DockerException, requests.exceptions.RequestException):
        raise
    except Exception as exc:
        with hop_log.open("a") as handle:
            handle.write(
                f"\npht station: the output could not be copied out: {type(exc).__name__}: {exc}\n"
            )
        raise TrainFailed(
            "the train's output could not be copied out of its container (a name or folder "
            "this station cannot hold); the hop's log at the station says which"
        ) from None


@dataclass(frozen=True)
class SealTo:
    """Whom a hop's output is sealed to, and under which context."""

    recipients: Sequence[PublicIdentity]
    context: str


def control_and_seal(
    output_dir: Path,
    sealed_out: Path,
    seal_to: SealTo,
    verified: VerifiedHop,
    max_bytes: int,
    config: StationConfig,
    hop_log: Path,
    release: bool,
    checked: Callable[[Disclosure], None] = lambda _: None,
) -> tuple[Disclosure, Digests]:
    """Disclosure control on the output (``checked`` is told its result), then tar and
    seal the checked files in one pipe into ``sealed_out``
    (:func:`trains.statepipe.pack_and_seal`: no archive file, both digests taken on the
    way). Nothing is sealed before every check passed; a refusal or a failure while
    sealing leaves no ``sealed_out``. Errors as :func:`control_and_pack`."""
    sealed: list[Digests] = []

    def pack(names: list[str], disclosure: Disclosure) -> None:
        checked(disclosure)
        sealed.append(
            pack_and_seal(
                output_dir, names, max_bytes, sealed_out, seal_to.recipients, seal_to.context
            )
        )

    disclosure = _controlled(output_dir, verified, max_bytes, config, hop_log, release, pack)
    return disclosure, sealed[0]


def control_and_pack(
    output_dir: Path,
    archive: Path,
    verified: VerifiedHop,
    max_bytes: int,
    config: StationConfig,
    hop_log: Path,
    release: bool,
) -> Disclosure:
    """Disclosure control on the output, then pack it into ``archive``, unsealed (a hop
    seals with :func:`control_and_seal`); ``release``: this hop is the release point (the
    last hop, or where a converged train ended the route).

    Their own errors quote what the train chose (an undeclared file's name, a size, how
    many cells were small): that goes to the hop's log, here. Central and the researcher
    hear only which rule the output broke, in fixed words; whatever else goes wrong while
    reading the train's files (bad encoding, a malformed CSV) is the output being invalid.
    """

    def pack(names: list[str], _: Disclosure) -> None:
        with archive.open("wb") as target:
            state_codec.pack_to(output_dir, names, max_bytes, target)

    return _controlled(output_dir, verified, max_bytes, config, hop_log, release, pack)


def _controlled(
    output_dir: Path,
    verified: VerifiedHop,
    max_bytes: int,
    config: StationConfig,
    hop_log: Path,
    release: bool,
    pack: Callable[[list[str], Disclosure], None],
) -> Disclosure:
    """The checks, then ``pack`` of the checked files (+ published.json at release); an
    error of either is logged here and raised in fixed words (:func:`output_refusal`)."""
    outputs = verified.manifest.outputs
    try:
        disclosure = check_output(output_dir, outputs, max_bytes, config.policy.disclosure, release)
        # differential privacy on what the release rules let through, if the policy asks
        privatize_at_release(output_dir, verified, config, release)
        pack([f.name for f in disclosure.files], disclosure)
    except (BudgetExceeded, NotCovered):
        raise  # the station's own numbers and the types' fixed names: nothing the train chose
    except (SinkError, SealError):
        raise  # the station's disk or keys failed while sealing: not the train's output
    except Exception as exc:
        with hop_log.open("a") as handle:
            handle.write(f"\npht station: the output was refused: {type(exc).__name__}: {exc}\n")
        raise output_refusal(exc, verified.manifest.resources) from None
    return disclosure


def output_refusal(exc: Exception, resources: Resources) -> PhtError:
    """The rule an output broke, in fixed words (the same error class, without details)."""
    where = "the hop's log at the station says which file (ask the station admin)"
    if isinstance(exc, ReleaseRefused):  # the release point's typed rules (issue 12)
        return DisclosureRefused(f"{exc.fixed}; {where}")
    if isinstance(exc, DisclosureRefused):
        return DisclosureRefused(
            "a count file of the output holds cells below the station's minimum; aggregate "
            f"further (or suppress small cells in the train) and resubmit; {where}"
        )
    if isinstance(exc, StateTooLarge):
        return StateTooLarge(
            f"the train wrote more than its max_output_mb of {resources.max_output_mb} MB; "
            "nothing was kept"
        )
    return StateInvalid(
        "the output does not match the train's declared outputs (an undeclared, missing or "
        f"not regular file) or a file cannot be read as its type; {where}"
    )
