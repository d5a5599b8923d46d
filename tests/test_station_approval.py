"""Approval per train: one ``pht-station approve TRAIN`` covers every hop of that train at
this station until its manifest expires; ``--hop N`` approves one. The standing approval
is bound to the train id, the manifest's digest and its signer, so a different manifest
under the same id (an attack by whoever makes offers) still waits for the admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central.messages import HopInput, HopOffer
from station import hop as hops
from station.approvals import StandingApproval
from station.audit import verify as verify_audit
from station.cli import main
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.queue import HopState
from station.service import StationService
from tests.factories import make_manifest, sign_receipt
from trains.errors import ConfigError
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Image
from trains.signing import sign

OUT = "sha256:" + "5" * 64


@pytest.fixture
def world(tmp_path):
    alice, mallory = Identity.generate("alice"), Identity.generate("mallory")
    here = Identity.generate("hospital-a")
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(
            name=here.name, central_url="http://127.0.0.1:1", state_dir=tmp_path / "state"
        ),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(
            trusted_signers=[alice.public.signing_fingerprint, mallory.public.signing_fingerprint],
            approval="manual",
        ),
    )
    return alice, mallory, here, config, StationService(config)


def offers(manifest, researcher, here, rounds):
    """The offers of every hop of a one-stop route of ``rounds`` rounds: hop n reads the
    output of hop n - 1, whose receipt travels with it."""
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    made = []
    for index in range(rounds):
        receipts = []
        if index:
            inputs = [] if index == 1 else [OUT]
            previous = [] if index == 1 else [made[-1].previous_receipts[0].digest]
            receipts = [
                sign_receipt(manifest, envelope.digest, index - 1, here, inputs, previous, OUT)
            ]
        made.append(
            HopOffer(
                train_id=manifest.train_id,
                hop=index,
                kind="local",
                manifest=envelope,
                inputs=[HopInput(hop=index - 1, digest=OUT)] if index else [],
                previous_receipts=receipts,
                lease_s=60,
            )
        )
    return made


def admit(offer, here, service):
    return hops.admit(offer, service.config, here, service.queue, service.audit)


def test_one_approval_covers_every_round_of_the_train(world):
    alice, _, here, _, service = world
    manifest = make_manifest(alice, [here], rounds=4)
    first, *later = offers(manifest, alice, here, 4)
    assert admit(first, here, service).state == HopState.PENDING
    approval, approved = service.approve_train(manifest.train_id[:8], by="admin")
    assert [r.hop for r in approved] == [0] and approved[0].state == HopState.APPROVED
    assert approval.expires_at == manifest.expires_at
    for offer in later:  # rounds 2..4 run without asking
        record = admit(offer, here, service)
        assert record.state == HopState.APPROVED and record.approved_by == "admin"
    events = [e["event"] for e in service.audit.entries()]
    assert events.count("train_approved") == 1 and events.count("approved") == 4
    assert verify_audit(service.audit.path) == []


def test_a_different_manifest_under_the_same_train_id_still_waits(world):
    """Attack: after the admin approved a train, its id comes again with another manifest
    (another image; then the same one signed by another trusted researcher)."""
    alice, mallory, here, _, service = world
    manifest = make_manifest(alice, [here], rounds=2)
    assert admit(offers(manifest, alice, here, 2)[0], here, service).state == HopState.PENDING
    service.approve_train(manifest.train_id, by="admin")
    other_image = Image(repository="127.0.0.1:5000/pht/cohort", digest="sha256:" + "ee" * 32)
    changed = make_manifest(alice, [here], rounds=2, train_id=manifest.train_id, image=other_image)
    assert admit(offers(changed, alice, here, 2)[1], here, service).state == HopState.PENDING
    # the same manifest but signed (and named) by another researcher: a different signer
    forged = make_manifest(mallory, [here], rounds=2, train_id=manifest.train_id)
    (service.queue.hops / f"{manifest.train_id}-1.json").unlink()
    assert admit(offers(forged, mallory, here, 2)[1], here, service).state == HopState.PENDING


def test_an_expired_standing_approval_covers_nothing(world):
    alice, _, here, _, service = world
    manifest = make_manifest(alice, [here], rounds=2)
    first, second = offers(manifest, alice, here, 2)
    service.approvals.add(
        StandingApproval(
            train_id=manifest.train_id,
            manifest_digest=first.manifest.digest,
            signer_key=alice.public.signing_fingerprint,
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
            by="admin",
            at=datetime.now(UTC) - timedelta(days=1),
        )
    )
    assert admit(second, here, service).state == HopState.PENDING


def test_a_train_is_approved_only_once_seen(world):
    alice, _, here, _, service = world
    with pytest.raises(ConfigError, match="no hop of a train"):
        service.approve_train("0123abcd", by="admin")
    manifest = make_manifest(alice, [here])
    record = admit(offers(manifest, alice, here, 1)[0], here, service)
    service.reject(record.id, "no ethics approval", by="admin")
    with pytest.raises(ConfigError, match="waits for approval"):
        service.approve_train(manifest.train_id, by="admin")


def test_cli_approves_one_hop_with_hop_and_the_train_without(world, tmp_path, capsys):
    alice, _, here, _, service = world
    toml = tmp_path / "station.toml"
    fingerprint = alice.public.signing_fingerprint
    toml.write_text(
        f'[station]\nname = "{here.name}"\ncentral_url = "http://127.0.0.1:1"\n'
        f'state_dir = "state"\n[datasets.cohort]\npath = "d.csv"\n'
        f'[policy]\ntrusted_signers = ["{fingerprint}"]\napproval = "manual"\n'
    )
    manifest = make_manifest(alice, [here], rounds=3)
    first, second, third = offers(manifest, alice, here, 3)
    admit(first, here, service)
    cli = ["--config", str(toml)]
    assert main(["approve", manifest.train_id[:8], "--hop", "0", *cli]) == 0
    assert "approved hop" in capsys.readouterr().out
    assert admit(second, here, service).state == HopState.PENDING  # one hop only
    assert main(["approve", f"{manifest.train_id}-1", *cli]) == 0  # a hop's id: that hop
    assert admit(third, here, service).state == HopState.PENDING
    assert main(["approve", manifest.train_id, *cli]) == 0
    out = capsys.readouterr().out
    assert "approved train" in out and "hop 2 runs" in out
    assert service.get(f"{manifest.train_id}-2").state == HopState.APPROVED
    assert main(["approve", manifest.train_id, *cli]) == 1  # nothing pending now
    assert "waits for approval" in capsys.readouterr().err
    assert main(["audit", "verify", *cli]) == 0


def test_hops_waiting_with_different_manifests_are_not_approved_as_one_train(world):
    """Attack: two hops of one train id wait with different manifests; approving "the
    train" must not pick one for the admin. From the console the admin approves the
    manifest of the hop they looked at, and only the hops with that manifest."""
    alice, _, here, _, service = world
    manifest = make_manifest(alice, [here], rounds=2)
    other_image = Image(repository="127.0.0.1:5000/pht/cohort", digest="sha256:" + "ee" * 32)
    changed = make_manifest(alice, [here], rounds=2, train_id=manifest.train_id, image=other_image)
    admit(offers(manifest, alice, here, 2)[0], here, service)
    admit(offers(changed, alice, here, 2)[1], here, service)
    with pytest.raises(ConfigError, match="different manifests"):
        service.approve_train(manifest.train_id, by="admin")
    seen = f"{manifest.train_id}-1"
    approval, approved = service.approve_train(manifest.train_id, by="admin", seen=seen)
    assert [r.id for r in approved] == [seen]
    assert approval.manifest_digest == service.get(seen).manifest.digest
    assert service.get(f"{manifest.train_id}-0").state == HopState.PENDING


def test_a_held_output_is_released_or_refused_with_a_reason(world):
    alice, _, here, _, service = world
    manifest = make_manifest(alice, [here], rounds=2)
    first, second = offers(manifest, alice, here, 2)
    for offer in (first, second):
        record = admit(offer, here, service)
        record.state = HopState.HELD  # as a run with release = "manual" leaves it
        service.queue.save(record)
    with pytest.raises(ConfigError, match="give a reason"):
        service.refuse_release(f"{manifest.train_id}-0", "  ", by="console:steward")
    refused = service.refuse_release(f"{manifest.train_id}-0", "too detailed", by="console:x")
    assert refused.state == HopState.REJECTED and not refused.reported
    assert refused.reason is not None and "rejected its output: too detailed" in refused.reason
    released = service.release(f"{manifest.train_id}-1", by="console:x")
    assert released.state == HopState.SEALED
    with pytest.raises(ConfigError, match="only a held hop"):
        service.release(f"{manifest.train_id}-1", by="console:x")
    events = [(e["event"], e.get("by")) for e in service.audit.entries()][-2:]
    assert events == [("rejected", "console:x"), ("output_released", "console:x")]
