"""A refusing station passing the state on (route.on_refusal = "skip"), against the real
central app in-process and real keys and seals; and the attack: an input changed at central
is never passed on, the refusal is reported and the train fails."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central.client import CentralClient
from station import delivery, passage
from station.audit import AuditLog
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.queue import HopQueue, HopRecord, HopState
from tests import test_central_protocol as protocol
from tests.test_central_protocol import auth, run_hop, submit
from trains.receipt import HopReceipt
from trains.sealing import digest_bytes, open_sealed, output_context
from trains.signing import unverified_payload

database_url = protocol.database_url  # on SQLite and on PostgreSQL
world = protocol.world

REASON = "PolicyRejected: station hospital-b does not trust signer alice"


def client_for(app, token: str) -> CentralClient:
    """The station's own client, speaking to the in-process app."""
    central = CentralClient("http://testserver", token)
    central._http = TestClient(app, headers=auth(token))
    return central


def station_setup(tmp_path, name: str) -> tuple[StationConfig, HopQueue, AuditLog]:
    """A station's config (trusting no signer: it refuses), queue and audit log."""
    csv = tmp_path / f"{name}.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name=name, central_url="http://testserver"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[]),
        base_dir=tmp_path / name,
    )
    return config, HopQueue(config.state_dir), AuditLog(config.state_dir / "audit.jsonl")


@pytest.fixture
def refused(world, tmp_path):
    """hop 0 ran at hospital-a; hospital-b claimed hop 1 (of 4: the last never skips) and
    refused it."""
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    run_hop(client, stations[0], tokens["hospital-a"], b"the state a wrote")
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    assert offer is not None and offer.hop == 1
    config, queue, audit = station_setup(tmp_path, "hospital-b")
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON))
    return client, researcher, manifest, stations, tokens, central, config, queue, audit, record


def test_the_refused_hop_passes_the_state_on_unchanged_and_the_train_finishes(refused):
    client, _, manifest, stations, tokens, central, config, queue, audit, record = refused
    assert passage.may_pass_on(record)
    record = passage.pass_on(record, config, stations[1], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.SEALED, True)
    sealed, receipt = queue.load_output(record)
    predicate = unverified_payload(receipt, HopReceipt).predicate
    assert (predicate.kind, predicate.reason, predicate.container_seconds) == (
        "skipped",
        REASON,
        0.0,
    )
    # sealed to hospital-a (who reads hop 2), bound to hop 1: the bytes hop 0 wrote,
    # unchanged, and committed to as hop 0 did
    context = output_context(manifest.train_id, 1)
    assert open_sealed(sealed.read_bytes(), stations[0].sealing, context) == b"the state a wrote"
    assert predicate.output_commitment == digest_bytes(b"the state a wrote")
    record = delivery.deliver(record, central, queue, audit)
    assert record.state == HopState.DONE
    for hop in (2, 3):
        run_hop(client, stations[hop % 2], tokens[stations[hop % 2].name], b"later")
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert status.json()["status"] == "done"
    assert status.json()["hops"][1]["status"] == "skipped"
    final = client.get(f"/api/v1/trains/{manifest.train_id}/result", headers=auth(tokens["alice"]))
    assert final.status_code == 200
    assert "passed_on" in audit.path.read_text()


def test_an_input_changed_at_central_is_never_passed_on(refused, tmp_path):
    client, _, manifest, stations, tokens, central, config, queue, audit, record = refused
    data_dir = client.app.state.ctx.settings.data_dir
    (blob,) = (data_dir / "blobs").rglob("output-00000.sealed")
    tampered = bytearray(blob.read_bytes())
    tampered[-1] ^= 1
    blob.write_bytes(bytes(tampered))
    record = passage.pass_on(record, config, stations[1], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.REJECTED, False)
    assert "the state was not passed on" in (record.reason or "")
    assert not list(queue.outbox.iterdir())  # nothing sealed, nothing to send
    assert not passage.may_pass_on(record)  # tried once: now the refusal is reported
    delivery.report(record, central, queue, audit)
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert status.json()["status"] == "failed"
    assert "not passed on" in status.json()["error"]
    assert "pass_on_refused" in audit.path.read_text()


def test_a_route_that_fails_refusals_is_not_passed_on(world, tmp_path):
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"])
    central = client_for(client.app, tokens["hospital-a"])
    offer = central.next_hop()
    assert offer is not None
    record = HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON)
    assert not passage.may_pass_on(record)
