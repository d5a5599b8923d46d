"""The researcher's result: download the final state, verify the receipt chain and whom
it is sealed to, open and unpack it in one pass (:func:`trains.statepipe.open_and_unpack`),
then check that the archive opened is the one the last station committed to. The digests
are taken while the bytes stream (the download's sha256, the plaintext's while it is
opened): no second read of a state that may be gigabytes."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.client import CentralClient
from train_builder.release_view import read_published
from trains.errors import CentralError, PhtError
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.receipt import HopPredicate, check_opened, verify_chain
from trains.sealing import check_sealed_to, output_context
from trains.signing import open_envelope
from trains.statepipe import open_and_unpack

MAX_RESULT_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Result:
    """A verified, opened result. What the train released with a type is ``published``
    (``quantity(name)`` for one of them); ``state`` is the state.json beside it, ``{}``
    when the train published typed quantities (its state stays at the release point)."""

    train_id: str
    out_dir: Path
    files: list[str]
    hops: list[HopPredicate]

    @property
    def state(self) -> dict[str, Any] | None:
        path = self.out_dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def published(self) -> dict[str, Any] | None:
        """``published.json`` as the releasing station rewrote it: ``quantities`` (a
        suppressed number is ``None``) and ``release`` (``suppressed``: every suppression
        with its rule); ``None`` if the train published nothing typed."""
        return read_published(self.out_dir)

    def quantity(self, name: str) -> dict[str, Any]:
        """The released quantity called ``name``; KeyError if none was released by it."""
        for q in (self.published or {}).get("quantities", []):
            if q.get("name") == name:
                return dict(q)
        raise KeyError(f"the result of {self.train_id} released no quantity named {name!r}")


def fetch_result(
    central: CentralClient, identity: Identity, train_id: str, out_dir: Path
) -> Result:
    """Download, verify the whole receipt chain (every hop of the plan) and that the final
    state is sealed to exactly ``identity``, then open it into ``out_dir``: a new (or
    empty) folder that appears only once every file is out and checked, readable by the
    researcher only."""
    _check_out_dir(out_dir)
    status = central.status(train_id)
    if status["status"] != "done":
        detail = f": {status['error']}" if status.get("error") else ""
        raise CentralError(f"train {train_id} is {status['status']}{detail}")
    envelope = central.manifest(train_id)
    manifest = open_envelope(
        envelope, MANIFEST_TYPE, identity.public, Manifest, "manifest (as central holds it)"
    )
    receipts = central.receipts(train_id)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp: 0700, next to out_dir so that the final rename stays on one file system
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".pht-download-") as tmp:
        sealed = Path(tmp) / "result.sealed"
        # streamed (a state may be large); its sha256 taken while it was written
        digest = central.download_result(train_id, sealed)
        hops = verify_chain(
            manifest, envelope.digest, manifest.initial_state_digest, receipts, digest
        )
        last = hops[-1].hop  # the last hop, or where a converged train ended the route
        # the header decides who can open it, whatever the receipt says
        check_sealed_to(sealed, [manifest.researcher], "the final state")
        staged = Path(tmp) / "result"
        # opened and unpacked in one pass, every chunk authenticated before tar sees it
        opened, files = open_and_unpack(
            sealed,
            staged,
            MAX_RESULT_BYTES,
            identity.sealing,
            output_context(train_id, last),
            hash_sealed=False,
        )
        # the plaintext the last station signed for (its commitment), nothing else: the
        # unpacked files stay in the temporary folder (removed) unless it is
        check_opened(opened.plain, hops[-1], "the final state")
        _private(staged)
        _check_out_dir(out_dir)  # still new or empty: rename replaces an empty folder
        staged.rename(out_dir)
    return Result(train_id, out_dir, files, hops)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise PhtError(f"{out_dir} exists and is not a folder; give a new folder for the result")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise PhtError(
            f"{out_dir} is not empty; give a new or empty folder for the result (it is never "
            "mixed with files already there)"
        )


def _private(folder: Path) -> None:
    """Readable by the researcher only: folders 0700, files 0600 (a result is patient-level
    aggregate data that other users of this machine have no business reading)."""
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
