"""Issue 17, reproduction 4: a skip is verifiable. A station that signs ``skipped`` but
passes on another state, or skips the last hop, is caught by central, by the next station
(its real input check, against the real central app in-process with real keys and seals)
and by the researcher's ``verify_chain``; an honest skip still goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from central import hop_desk
from station import delivery, passage
from station import hop as station_hop
from station.queue import HopRecord, HopState
from station.verify import verify_passage
from tests import test_central_protocol as protocol
from tests.test_central_protocol import auth, run_hop, submit
from tests.test_station_passage import REASON, client_for, station_setup
from train_builder.researcher import Researcher
from trains import state_codec
from trains.errors import PhtError, ReceiptChainBroken
from trains.receipt import verify_chain
from trains.sealing import digest_bytes
from trains.signing import Envelope

database_url = protocol.database_url  # on SQLite and on PostgreSQL
world = protocol.world


def state(tmp_path: Path, text: str) -> bytes:
    """A real state archive (with its nonce) holding one file."""
    folder = tmp_path / f"state-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "state.json").write_text(text)
    return state_codec.pack(folder, ["state.json"], 1 << 20)


def open_as_next_stop(client, station, token, tmp_path: Path) -> list[str]:
    """What the next station does with its input before the container starts: download,
    check digest, readers and seal, open, check the commitments, unpack."""
    central = client_for(client.app, token)
    offer = central.next_hop()
    assert offer is not None
    verified = verify_passage(offer, station.public)  # checks 1, 3, 4, 8
    work = tmp_path / f"work-{offer.hop}"
    (work / "input").mkdir(parents=True)
    station_hop._fetch_inputs(offer, verified, station, central, work, work / "input", 1 << 20)
    return sorted(p.name for p in (work / "input").iterdir())


def chain_of(client, manifest, envelope, tokens, final: bytes):
    receipts = [
        Envelope.model_validate(r)
        for r in client.get(
            f"/api/v1/trains/{manifest.train_id}/receipts", headers=auth(tokens["alice"])
        ).json()
    ]
    return verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(final))


def test_central_refuses_a_skip_that_changed_the_state(world, tmp_path):
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 3}'))
    skip = run_hop(client, stations[1], tokens["hospital-b"], state(tmp_path, '{"n": 99}'), REASON)
    assert skip["done"].status_code == 422
    assert skip["done"].json()["code"] == "skip_changed_state"
    assert (
        "the state hop 1 (hospital-b) passed on is not the one hop 0 (hospital-a) wrote"
        in (skip["done"].json()["message"])
    )


def skipped_with_a_changed_state(world, tmp_path, monkeypatch):
    """hop 0 ran at hospital-a; hospital-b signed hop 1 ``skipped`` but passed on another
    state. Central colludes: its own check is switched off (a fake for a fault: a
    dishonest central), so the next stop and the researcher must not rely on it."""
    client, researcher, stations, tokens = world
    monkeypatch.setattr(hop_desk, "check_skip", lambda p, handed: None)
    manifest, envelope = submit(
        client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip"
    )
    run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 3}'))
    skip = run_hop(client, stations[1], tokens["hospital-b"], state(tmp_path, '{"n": 99}'), REASON)
    assert skip["done"].status_code == 200  # central let it through
    return client, researcher, stations, tokens, manifest, envelope


def test_the_next_stop_refuses_a_state_a_skip_changed(world, tmp_path, monkeypatch):
    client, _, stations, tokens, _, _ = skipped_with_a_changed_state(world, tmp_path, monkeypatch)
    with pytest.raises(
        ReceiptChainBroken,
        match=r"the state hop 1 \(hospital-b\) passed on is not the one hop 0 \(hospital-a\)",
    ):
        open_as_next_stop(client, stations[0], tokens["hospital-a"], tmp_path)


def test_a_skipping_next_stop_does_not_pass_on_a_state_a_skip_changed(world, tmp_path, monkeypatch):
    client, _, stations, tokens, _, _ = skipped_with_a_changed_state(world, tmp_path, monkeypatch)
    central = client_for(client.app, tokens["hospital-a"])
    offer = central.next_hop()
    assert offer is not None and offer.hop == 2
    config, queue, audit = station_setup(tmp_path, "hospital-a")
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON))
    record = passage.pass_on(record, config, stations[0], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.REJECTED, False)
    assert "passed on is not the one hop 0" in (record.reason or "")


def test_the_researcher_refuses_a_chain_where_a_skip_changed_the_state(
    world, tmp_path, monkeypatch
):
    """Every later stop colludes too (they run without checking): the chain still fails."""
    client, _, stations, tokens, manifest, envelope = skipped_with_a_changed_state(
        world, tmp_path, monkeypatch
    )
    run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 100}'))
    last = run_hop(client, stations[1], tokens["hospital-b"], state(tmp_path, '{"n": 101}'))
    assert last["done"].json()["train_status"] == "done"
    with pytest.raises(
        ReceiptChainBroken,
        match=r"hop 1 \(hospital-b\) passed on is not the one hop 0 \(hospital-a\) wrote",
    ):
        chain_of(client, manifest, envelope, tokens, last["sealed"])


def test_a_skip_at_the_first_hop_cannot_make_up_a_state(world, tmp_path):
    """With no initial state, a skipped first hop has only the empty state to pass on:
    central cannot tell, the next stop does."""
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    made_up = run_hop(
        client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 7}'), REASON
    )
    assert made_up["done"].status_code == 200
    with pytest.raises(PhtError, match="skipped every hop before it and brought no initial"):
        open_as_next_stop(client, stations[1], tokens["hospital-b"], tmp_path)


@pytest.mark.parametrize("first", [True, False], ids=["first-hop", "after-a-run"])
def test_an_honest_skip_passes_every_check(world, tmp_path, first):
    """The real passage code skips hop 0 (the empty state) or hop 1 (after hop 0 ran); the
    next stop's real input check opens exactly what was handed on."""
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    skipper, reader = (stations[0], stations[1]) if first else (stations[1], stations[0])
    if not first:
        run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 3}'))
    central = client_for(client.app, tokens[skipper.name])
    offer = central.next_hop()
    assert offer is not None and offer.hop == (0 if first else 1)
    config, queue, audit = station_setup(tmp_path, skipper.name)
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON))
    record = passage.pass_on(record, config, skipper, central, queue, audit)
    assert record.passed_on is True, record.reason
    assert delivery.deliver(record, central, queue, audit).state == HopState.DONE
    names = open_as_next_stop(client, reader, tokens[reader.name], tmp_path)
    assert names == ([] if first else ["state.json"])


def test_a_skip_at_the_last_hop_is_refused_by_the_station_and_central(world, tmp_path):
    """The last hop runs finalize and disclosure control on what the researcher gets: its
    station does not pass the state on, and central refuses a skipped receipt for it."""
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"], on_refusal="skip")
    run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 3}'))
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    assert offer is not None and offer.hop == 1
    config, queue, audit = station_setup(tmp_path, "hospital-b")
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON))
    record = passage.pass_on(record, config, stations[1], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.REJECTED, False)
    assert "the state was not passed on: hop 1 may not be skipped" in (record.reason or "")
    assert "is the last hop" in (record.reason or "")
    assert not passage.may_pass_on(record)  # the refusal, with why, is reported
    delivery.report(record, central, queue, audit)
    status = client.get(f"/api/v1/trains/{offer.train_id}", headers=auth(tokens["alice"]))
    assert status.json()["status"] == "failed"
    assert "is the last hop" in status.json()["error"]


def test_central_refuses_a_skipped_receipt_for_the_last_hop(world, tmp_path):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"], on_refusal="skip")
    first = run_hop(client, stations[0], tokens["hospital-a"], b"", REASON)  # may skip
    assert first["done"].status_code == 200
    last = run_hop(client, stations[1], tokens["hospital-b"], b"", REASON)
    assert last["done"].status_code == 422
    assert last["done"].json()["code"] == "skip_not_allowed"
    assert "is the last hop" in last["done"].json()["message"]
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert [h["status"] for h in status.json()["hops"]] == ["skipped", "running"]


def test_the_researcher_opens_only_the_archive_the_last_station_committed_to(world, tmp_path):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    run_hop(client, stations[0], tokens["hospital-a"], state(tmp_path, '{"n": 3}'))
    signed_for = digest_bytes(state(tmp_path, '{"n": 4}'))
    last = run_hop(
        client, stations[1], tokens["hospital-b"], state(tmp_path, '{"n": 5}'), None, signed_for
    )
    assert last["done"].json()["train_status"] == "done"
    out = tmp_path / "results" / "out"
    r = Researcher(researcher, client_for(client.app, tokens["alice"]))
    with pytest.raises(ReceiptChainBroken, match="the final state opens to a state other"):
        r.result(manifest.train_id, out)
    assert not out.exists()
