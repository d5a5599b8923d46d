"""One hop at a station, in the order that is the security protocol:

admit (verify, decide approval) -> run (open the inputs, materialise data for a local hop,
run the container in the hop's mode)
-> disclosure control -> seal to the next readers and sign the receipt -> keep both on disk
-> (manual release) -> upload the same bytes and complete, until central has them.

``station.verify`` holds the checks, ``station.disclosure`` the output rules,
``station.outcome`` what a run may tell the outside (a category, never the train's words),
``station.queue`` the record that survives restarts, ``station.delivery`` the upload and
the failure report. Nothing about the data is logged.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from central.client import CentralClient
from central.messages import HopOffer
from station import datasources, secure_masking
from station.approvals import StandingApprovals
from station.audit import AuditLog
from station.config import StationConfig
from station.disclosure import Disclosure
from station.fetch import fetch_inputs as _fetch_inputs
from station.outcome import SealTo, check_result, contained, control_and_seal, ends_route
from station.queue import HopQueue, HopRecord, HopState
from station.runner import DockerRunner
from station.timeline import Stopwatch
from station.verify import (
    VerifiedHop,
    verify_offer,
)
from trains.early_end import early_end_refused, sealed_to_after
from trains.errors import (
    ConfigError,
    HopDeferred,
    PhtError,
    TrainFailed,
    TrainRefused,
)
from trains.keys import Identity
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.sealing import output_context
from trains.signing import Envelope, sign

log = logging.getLogger("pht.station")
WORK_PREFIX = "hop-"
T = TypeVar("T")


def admit(
    offer: HopOffer, config: StationConfig, me: Identity, queue: HopQueue, audit: AuditLog
) -> HopRecord:
    """Verify an offer and record it: refused, waiting for the admin, or approved to run."""
    ident = {"train_id": offer.train_id, "hop": offer.hop}
    audit.append("offer_received", **ident, manifest_digest=offer.manifest.digest)
    try:
        verified = verify_offer(offer, config, me.public)
    except PhtError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        audit.append("verified", **ident, result="refused", reason=reason)
        log.warning("hop %s of train %s refused: %s", offer.hop, offer.train_id, reason)
        return queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=reason))
    signer = verified.manifest.researcher
    audit.append(
        "verified",
        **ident,
        result="passed",
        signer=signer.name,
        signer_key=signer.signing_fingerprint,
        image=verified.manifest.image.reference,
        needs_approval=list(verified.needs_approval),
    )
    standing = StandingApprovals(queue.root).covering(
        offer.train_id, verified.manifest_digest, signer.signing_fingerprint
    )
    if verified.needs_approval and standing is not None:  # the admin approved the train
        audit.append("approved", **ident, by=standing.by, standing=True)
        return queue.save(HopRecord.from_offer(offer, HopState.APPROVED, approved_by=standing.by))
    if verified.needs_approval:
        log.info("hop %s of train %s waits for approval", offer.hop, offer.train_id)
        record = HopRecord.from_offer(
            offer, HopState.PENDING, needs_approval=list(verified.needs_approval)
        )
        audit.append("queued", **ident, needs_approval=list(verified.needs_approval))
        return queue.save(record)
    audit.append("approved", **ident, by="policy")
    return queue.save(HopRecord.from_offer(offer, HopState.APPROVED, approved_by="policy"))


def run(
    record: HopRecord,
    config: StationConfig,
    me: Identity,
    central: CentralClient,
    runner: Callable[[], DockerRunner],
    queue: HopQueue,
    audit: AuditLog,
) -> HopRecord:
    """Run an approved hop to a sealed output and signed receipt kept on disk.

    A HopDeferred (Docker or central unreachable) leaves the record approved, to retry; any
    other PhtError fails it with its reason, for central.
    """
    ident = {"train_id": record.train_id, "hop": record.hop}
    try:
        docker = _docker(runner)
        # remembered so that a restart can remove what a killed run left behind
        record.runner_id = getattr(docker, "runner_id", None)
        record.state, record.attempts = HopState.RUNNING, record.attempts + 1
        record.pulled_image = None  # a prepared image is the run's now (station.prepare)
        queue.save(record)
        incoming = queue.sealed_path(record).with_suffix(".incoming")
        receipt_env, disclosure, output_digest = _run(
            record, config, me, central, docker, audit, incoming
        )
    except HopDeferred as exc:
        log.warning("hop %s of train %s deferred: %s", record.hop, record.train_id, exc)
        audit.append("deferred", **ident, reason=str(exc))
        record.state = HopState.APPROVED
        return queue.save(record)
    except TrainRefused as exc:
        return refuse(record, f"{type(exc).__name__}: {exc}", queue, audit)
    except ConfigError as exc:
        # the station's own setup (a data source's path, URL or query, and a database's
        # error text, which may quote rows): for the admin's log only
        log.warning("hop %s of train %s: %s", record.hop, record.train_id, exc)
        reason = "the station could not read its data for this train; its admin has the details"
        return fail(record, f"ConfigError: {reason}", queue, audit)
    except PhtError as exc:
        return fail(record, f"{type(exc).__name__}: {exc}", queue, audit)
    record.output_digest = output_digest  # taken while it was sealed
    queue.store_output(record, incoming, receipt_env)
    record.disclosure = disclosure
    # untyped files at the release point are held too (station.release, policy.disclosure)
    held = record.disclosure is not None and Disclosure.from_dict(record.disclosure).held
    if config.policy.release == "manual" or held:
        record.state = HopState.HELD
        audit.append("output_held", **ident, output_digest=record.output_digest)
    else:
        record.state = HopState.SEALED
        audit.append("output_released", **ident, by="policy", output_digest=record.output_digest)
    return queue.save(record)


def refuse(record: HopRecord, reason: str, queue: HopQueue, audit: AuditLog) -> HopRecord:
    """The train refused through the runtime (a code of its fixed vocabulary): a refusal
    like a policy one, so a route that skips refusing stops passes the state on."""
    log.info("hop %s of train %s: the train refused", record.hop, record.train_id)
    audit.append("train_refused", train_id=record.train_id, hop=record.hop, reason=reason)
    record.state, record.reason, record.reported = HopState.REJECTED, reason, False
    queue.clear_output(record)
    return queue.save(record)


def fail(record: HopRecord, reason: str, queue: HopQueue, audit: AuditLog) -> HopRecord:
    log.warning("hop %s of train %s failed: %s", record.hop, record.train_id, reason)
    audit.append("failed", train_id=record.train_id, hop=record.hop, reason=reason)
    record.state, record.reason, record.reported = HopState.FAILED, reason, False
    queue.clear_output(record)
    return queue.save(record)


def _run(
    record: HopRecord,
    config: StationConfig,
    me: Identity,
    central: CentralClient,
    docker: DockerRunner,
    audit: AuditLog,
    sealed_out: Path,
) -> tuple[Envelope, dict[str, Any], str]:
    """Verify, run, check and seal one hop; the sealed output is streamed to ``sealed_out``
    (memory stays flat whatever the state's size)."""
    started_at = datetime.now(UTC)
    watch = Stopwatch()
    offer = record.offer
    # the checks again: time has passed since the offer (expiry), the config may have changed
    verified = verify_offer(offer, config, me.public)
    watch.lap("verify")
    manifest, hop = verified.manifest, verified.hop
    ident = {"train_id": record.train_id, "hop": record.hop}
    config.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{hop.index}-", dir=config.work_dir))
    try:
        input_dir, data_dir, output_dir = (work / n for n in ("input", "data", "output"))
        for folder in (input_dir, data_dir, output_dir):
            folder.mkdir()
        max_bytes = manifest.resources.max_output_mb * 1024 * 1024
        # 9. the inputs: digests as the chain names them, opened with our key
        _fetch_inputs(offer, verified, me, central, work, input_dir, max_bytes)
        secure_masking.unmask_input(manifest, hop, me.sealing, input_dir)  # release point only
        watch.lap("inputs")
        image_id = _docker_call(lambda: docker.pull(manifest.image, config.pull_limits))
        watch.lap("image")
        for name in manifest.datasets if hop.kind == "local" else []:
            datasources.materialise(config, name, data_dir / name)
        _open_for_container(work)
        watch.lap("data")
        audit.append("run_started", **ident, attempt=record.attempts)
        log.info("running hop %s of train %s (%s)", hop.index, manifest.train_id, manifest.name)
        hop_log = config.work_dir / f"{manifest.train_id}-hop{hop.index}.log"
        result = _docker_call(
            lambda: contained(
                lambda: docker.run(
                    image_id,
                    input_dir=input_dir,
                    data_dir=data_dir,
                    output_dir=output_dir,
                    env=_environment(verified, me.name),
                    resources=manifest.resources,
                    # removed while the output is checked, sealed and delivered; the next
                    # run waits for it (a failure goes to the admin's log)
                    defer_cleanup=True,
                ),
                hop_log,
            )
        )
        hop_log.write_text(result.log)
        watch.add("sandbox", result.sandbox_s)
        watch.add("container", result.seconds)
        watch.add("copy_out", result.copy_out_s)
        watch.add("cleanup", result.cleanup_s)
        audit.append(
            "run_finished",
            **ident,
            exit_code=result.exit_code,
            seconds=round(result.seconds, 3),
            timed_out=result.timed_out,
        )
        check_result(result, manifest.resources, me.name)
        converged = ends_route(result, manifest, hop.index)
        secure_masking.mask_output(manifest, hop, me.sealing, output_dir)  # before it is read
        watch.restart()
        release = hop.is_last or converged  # what leaves goes to the researcher
        # sealed once, to every stop that reads it (the researcher after the last hop, or
        # after a hop where the converged train ended the route); tar and seal in one pipe,
        # after every check passed: the archive's digest (the commitment) and the sealed
        # file's are taken on the way
        recipients = sealed_to_after(manifest, hop.index, converged)
        seal_to = SealTo(recipients, output_context(manifest.train_id, hop.index))
        disclosure, digests = control_and_seal(
            output_dir,
            sealed_out,
            seal_to,
            verified,
            max_bytes,
            config,
            hop_log,
            release,
            checked=lambda _: watch.lap("disclosure"),
        )
        audit.append(
            "disclosure_checked",
            **ident,
            files=len(disclosure.files),
            bytes=disclosure.total_bytes,
            suppressed_cells=disclosure.suppressed_cells,
        )
        receipt = HopReceipt.for_hop(
            HopPredicate(
                train_id=manifest.train_id,
                hop=hop.index,
                round=hop.round,
                kind=hop.kind,
                station=me.name,
                station_key=me.public.signing_fingerprint,
                manifest_digest=verified.manifest_digest,
                image_digest=manifest.image.digest,
                input_state_digests=[i.digest for i in offer.inputs],
                output_state_digest=digests.sealed,
                output_commitment=digests.plain,
                output_sealed_to=[r.sealing_fingerprint for r in recipients],
                previous_receipt_digests=verified.previous_receipt_digests,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                container_seconds=round(result.seconds, 3),
                converged=converged,
                timeline=watch.last("seal"),
            )
        )
        return sign(receipt, RECEIPT_TYPE, me.signing), disclosure.to_dict(), digests.sealed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _environment(verified: VerifiedHop, station: str) -> dict[str, str]:
    manifest, hop = verified.manifest, verified.hop
    return {
        "PHT_MODE": hop.kind,
        "PHT_STATION": station,
        "PHT_ROUND": str(hop.round),
        "PHT_HOP": str(hop.index),
        "PHT_LAST_HOP": "1" if hop.is_last else "0",
        "PHT_STOP": str(hop.position),
        "PHT_STOPS": str(len(manifest.route.stops)),
        "PHT_ROUNDS": str(manifest.route.rounds),
        "PHT_MAY_END": "1" if early_end_refused(manifest, hop.index) is None else "0",
        "PHT_ROUTE": manifest.route.mode,
    }


def _docker(factory: Callable[[], DockerRunner]) -> DockerRunner:
    from station.runner import DockerUnavailable

    try:
        return factory()
    except DockerUnavailable as exc:
        raise HopDeferred(str(exc)) from None


def _docker_call(call: Callable[[], T]) -> T:
    """Docker going away mid-hop defers the hop; the image or train failing does not."""
    import docker.errors
    import requests.exceptions

    from station.runner import DockerUnavailable

    try:
        return call()
    except DockerUnavailable as exc:
        raise HopDeferred(str(exc)) from None
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        if isinstance(exc, docker.errors.APIError) and exc.status_code and exc.status_code < 500:
            raise TrainFailed(f"Docker refused the run: {exc.explanation}") from None
        raise HopDeferred(
            f"Docker Engine stopped answering ({type(exc).__name__}); the hop is kept and "
            "retried; check dockerd"
        ) from None


def _open_for_container(work: Path) -> None:
    """The hop's inputs and data readable for the copy into the container's volumes. The
    output folder stays the station's own: the container writes to a Docker volume that
    the station copies out (station.output_volume), so no chown, which an unprivileged
    daemon (the systemd unit, no capabilities) could not do."""
    for path in work.rglob("*"):
        if path.is_file() and path.stat().st_nlink > 1:
            continue  # a read-only dataset linked in (datasources.place_file): the source
        path.chmod(0o755 if path.is_dir() else 0o644)
    work.chmod(0o755)
