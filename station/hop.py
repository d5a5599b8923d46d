"""One hop at a station, start to finish: verify, pull, run, check, seal, sign, upload.

The order is the security protocol; see ``station.verify`` for the checks themselves.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from central.client import CentralClient, HopOffer
from station.config import StationConfig
from station.runner import DockerRunner
from station.verify import VerifiedHop, check_input_bytes, verify_offer
from trains import state_codec
from trains.errors import PhtError, StateInvalid, TrainFailed
from trains.keys import Identity
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.sealing import open_sealed, seal, seal_context
from trains.signing import sign

log = logging.getLogger("pht.station")
CONTAINER_UID = 10001


def process_offer(
    offer: HopOffer,
    config: StationConfig,
    identity: Identity,
    central: CentralClient,
    runner: DockerRunner,
) -> str:
    """Run one offered hop; report a refusal or failure to central with its reason.

    Returns the train's status after this hop. Nothing about the data is logged.
    """
    try:
        return _process(offer, config, identity, central, runner)
    except PhtError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("hop %s of train %s refused or failed: %s", offer.hop, offer.train_id, reason)
        central.fail(offer.train_id, offer.hop, reason)
        return "failed"


def _process(
    offer: HopOffer,
    config: StationConfig,
    identity: Identity,
    central: CentralClient,
    runner: DockerRunner,
) -> str:
    started_at = datetime.now(UTC)
    verified = verify_offer(offer, config, identity.public)
    manifest, hop = verified.manifest, verified.hop
    config.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f"hop-{hop.index}-", dir=config.work_dir))
    try:
        input_dir, data_dir, output_dir = (work / n for n in ("input", "data", "output"))
        for folder in (input_dir, data_dir, output_dir):
            folder.mkdir()
        max_bytes = manifest.resources.max_output_mb * 1024 * 1024
        # 9. the input: digest as the chain names it, opened with our key for this hop
        if offer.input_digest is not None:
            sealed_path = work / "input.sealed"
            central.download_input(offer.train_id, hop.index, sealed_path)
            sealed = sealed_path.read_bytes()
            check_input_bytes(sealed, offer.input_digest)
            archive = open_sealed(
                sealed, identity.sealing, seal_context(manifest.train_id, hop.index)
            )
            state_codec.unpack(archive, input_dir, max_bytes)
            sealed_path.unlink()
        image_id = runner.pull(manifest.image)
        _materialise(config, manifest.datasets, data_dir)
        _open_for_container(work, output_dir)
        log.info("running hop %s of train %s (%s)", hop.index, manifest.train_id, manifest.name)
        result = runner.run(
            image_id,
            input_dir=input_dir,
            data_dir=data_dir,
            output_dir=output_dir,
            env={
                "PHT_MODE": "local",
                "PHT_STATION": identity.name,
                "PHT_ROUND": str(hop.round),
                "PHT_HOP": str(hop.index),
                "PHT_LAST_HOP": "1" if hop.is_last else "0",
                "PHT_STOP": str(hop.index % len(manifest.route.stops)),
                "PHT_STOPS": str(len(manifest.route.stops)),
                "PHT_ROUNDS": str(manifest.route.rounds),
            },
            resources=manifest.resources,
        )
        (config.work_dir / f"{manifest.train_id}-hop{hop.index}.log").write_text(result.log)
        if result.timed_out:
            raise TrainFailed(f"the train exceeded its timeout of {manifest.resources.timeout_s}s")
        if result.exit_code != 0:
            raise TrainFailed(
                f"the train exited with code {result.exit_code}; its log stays at station "
                f"{identity.name} (ask the station admin)"
            )
        sealed_out = _disclose_and_seal(verified, output_dir, max_bytes)
        output_digest = central.upload_output(offer.train_id, hop.index, sealed_out)
        recipient = manifest.recipient_after(hop.index)
        receipt = HopReceipt.for_hop(
            HopPredicate(
                train_id=manifest.train_id,
                hop=hop.index,
                round=hop.round,
                station=identity.name,
                station_key=identity.public.signing_fingerprint,
                manifest_digest=verified.manifest_digest,
                image_digest=manifest.image.digest,
                input_state_digest=offer.input_digest,
                output_state_digest=output_digest,
                output_sealed_to=[recipient.sealing_fingerprint],
                previous_receipt_digest=verified.previous_receipt_digest,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                container_seconds=round(result.seconds, 3),
            )
        )
        status = central.complete(
            offer.train_id, hop.index, sign(receipt, RECEIPT_TYPE, identity.signing)
        )
        log.info("hop %s done in %.2fs (container)", hop.index, result.seconds)
        return status
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _materialise(config: StationConfig, datasets: list[str], data_dir: Path) -> None:
    """Copy each requested dataset into its own read-only folder for this run only."""
    for name in datasets:
        target = data_dir / name
        target.mkdir()
        source = config.resolve(config.datasets[name].path)
        shutil.copyfile(source, target / f"data{source.suffix}")


def _open_for_container(work: Path, output_dir: Path) -> None:
    """The container's user may read inputs and data and write only the output folder."""
    for path in work.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    work.chmod(0o755)
    os.chown(output_dir, CONTAINER_UID, CONTAINER_UID)
    output_dir.chmod(0o700)


def _disclose_and_seal(verified: VerifiedHop, output_dir: Path, max_bytes: int) -> bytes:
    """Only the declared files leave, within the size cap, sealed to the next reader."""
    manifest, hop = verified.manifest, verified.hop
    written = state_codec.list_state_files(output_dir)
    undeclared = sorted(set(written) - set(manifest.outputs))
    if undeclared:
        raise StateInvalid(
            f"the train wrote undeclared files {undeclared}; declare them in train.toml outputs"
        )
    missing = sorted(set(manifest.outputs) - set(written))
    if missing:
        raise StateInvalid(f"the train did not write its declared outputs {missing}")
    archive = state_codec.pack(output_dir, written, max_bytes)
    recipient = manifest.recipient_after(hop.index)
    return seal(archive, [recipient], seal_context(manifest.train_id, hop.index + 1))
