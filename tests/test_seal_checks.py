"""The seal is checked, not only the receipt: against the real central app in-process, real
keys, seals and receipts (a station's container is replaced by the state it would write).

A receipt only says whom its station sealed the output to; the sealed blob's header decides
who can open it. A station that seals to one more key (an outsider) and signs an honest
looking receipt is caught by the researcher and by the next station before anything is
opened. And the researcher's extraction is atomic, private, and printed safely.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.testing_pg import database_url_for
from station import passage
from station.audit import AuditLog
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.hop import _fetch_inputs
from station.queue import HopQueue, HopRecord, HopState
from station.verify import VerifiedHop
from tests import test_central_protocol as protocol
from tests.test_central_protocol import auth, result_body, submit
from tests.test_station_passage import client_for
from train_builder import commands
from train_builder.researcher import Researcher
from trains import state_codec
from trains.errors import ReceiptChainBroken, SealedToOthers, SealError, StateInvalid
from trains.keys import Identity, PublicIdentity
from trains.manifest import Manifest
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.sealing import digest_bytes, open_sealed, output_context, seal, sealed_recipients
from trains.signing import Envelope, sign

world = protocol.world


@pytest.fixture
def database_url(tmp_path) -> str:
    """SQLite only: what is tested here is the seal, not central's database."""
    return database_url_for("sqlite", tmp_path)


@pytest.fixture
def outsider() -> Identity:
    return Identity.generate("outsider")


def state_tar(files: dict[str, bytes]) -> bytes:
    """A state archive as a station packs it (any names: the attacker builds it by hand)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


STATE = state_tar({"state.json": b'{"rows": 40}'})


def hop_sealed_to(
    client, station: Identity, token: str, payload: bytes, extra: list[PublicIdentity]
) -> dict:
    """A station's hop whose output is sealed to the readers the manifest names *and*
    ``extra``, while its receipt claims only the manifest's readers."""
    body = client.post("/api/v1/hops/next", headers=auth(token)).json()
    envelope = Envelope.model_validate(body["manifest"])
    manifest = Manifest.model_validate_json(envelope.payload_bytes)
    index = body["hop"]
    recipients = manifest.recipients_after(index)
    sealed = seal(payload, [*recipients, *extra], output_context(manifest.train_id, index))
    now = datetime.now(UTC)
    predicate = HopPredicate(
        train_id=manifest.train_id,
        hop=index,
        round=manifest.hop(index).round,
        kind=manifest.hop(index).kind,
        station=station.name,
        station_key=station.public.signing_fingerprint,
        manifest_digest=envelope.digest,
        image_digest=manifest.image.digest,
        input_state_digests=[i["digest"] for i in body["inputs"]],
        output_state_digest=digest_bytes(sealed),
        output_commitment=digest_bytes(payload),
        output_sealed_to=[r.sealing_fingerprint for r in recipients],  # the lie
        previous_receipt_digests=[
            Envelope.model_validate(r).digest for r in body["previous_receipts"]
        ],
        started_at=now,
        finished_at=now,
        container_seconds=1.0,
    )
    receipt = sign(HopReceipt.for_hop(predicate), RECEIPT_TYPE, station.signing)
    url = f"/api/v1/trains/{manifest.train_id}/hops/{index}/result"
    done = client.post(url, content=result_body(receipt, sealed), headers=auth(token))
    assert done.status_code == 200, done.text
    return {"sealed": sealed, "manifest": manifest}


def finished_train(world, last_payload: bytes = STATE, extra=()) -> tuple[Researcher, str]:
    """A two-stop train that finished; the last stop sealed ``last_payload`` (to ``extra``
    too)."""
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    hop_sealed_to(client, stations[0], tokens["hospital-a"], STATE, [])
    hop_sealed_to(client, stations[1], tokens["hospital-b"], last_payload, list(extra))
    return Researcher(researcher, client_for(client.app, tokens["alice"])), manifest.train_id


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert list(out.parent.iterdir()) == [], list(out.parent.iterdir())


# -- the researcher ---------------------------------------------------------------------


def test_a_final_state_also_sealed_to_an_outsider_is_refused_unopened(world, outsider, tmp_path):
    client = world[0]
    researcher, train_id = finished_train(world, extra=[outsider.public])
    # the attack is real: the outsider can open the final state
    blob = client.get(f"/api/v1/trains/{train_id}/result", headers=auth(world[3]["alice"])).content
    context = output_context(train_id, 1)
    assert open_sealed(blob, outsider.sealing, context) == STATE
    assert outsider.public.sealing_fingerprint in sealed_recipients_of(blob, tmp_path)
    out = tmp_path / "results" / "out"
    out.parent.mkdir()
    with pytest.raises(SealedToOthers, match=outsider.public.sealing_fingerprint):
        researcher.result(train_id, out)
    assert_nothing_left(out)


def sealed_recipients_of(blob: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "blob.sealed"
    path.write_bytes(blob)
    return sealed_recipients(path)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_final_blob_is_said_to_differ_from_what_was_signed(world, tmp_path, damage):
    client = world[0]
    researcher, train_id = finished_train(world)
    data_dir = client.app.state.ctx.settings.data_dir
    (blob,) = (data_dir / "blobs").rglob("output-00001.sealed")
    content = blob.read_bytes()
    blob.write_bytes(content[:-1] + bytes([content[-1] ^ 1]) if damage == "flip" else content[:-7])
    out = tmp_path / "results" / "out"
    out.parent.mkdir()
    with pytest.raises(ReceiptChainBroken) as caught:
        researcher.result(train_id, out)
    assert "the bytes differ from what the last station signed" in str(caught.value)
    assert "swapped" not in str(caught.value)
    assert_nothing_left(out)


def test_a_failed_extraction_leaves_nothing_behind(world, tmp_path):
    """The last stop's archive holds a good file, then one a state may not hold: the
    extraction fails halfway, and neither the good file nor any folder is left."""
    evil = state_tar({"state.json": b'{"rows": 40}', "payload.exe": b"MZ"})
    researcher, train_id = finished_train(world, last_payload=evil)
    out = tmp_path / "results" / "out"
    out.parent.mkdir()
    with pytest.raises(StateInvalid):
        researcher.result(train_id, out)
    assert_nothing_left(out)


def test_the_result_is_readable_by_the_researcher_only(world, tmp_path):
    payload = state_tar({"state.json": b'{"rows": 40}', "tables/counts.csv": b"a,b\n1,2\n"})
    researcher, train_id = finished_train(world, last_payload=payload)
    out = tmp_path / "results" / "out"
    result = researcher.result(train_id, out)
    assert result.state == {"rows": 40}
    assert sorted(result.files) == ["state.json", "tables/counts.csv"]
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "tables").stat().st_mode & 0o777 == 0o700
    for name in result.files:
        assert (out / name).stat().st_mode & 0o777 == 0o600, name
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no download folder left


def test_a_result_into_a_folder_that_holds_files_is_refused(world, tmp_path):
    researcher, train_id = finished_train(world)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        researcher.result(train_id, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_result_refuses_names_with_control_and_bidi_characters_and_prints_none(
    world, tmp_path, monkeypatch, capsys
):
    """A last station packs file names that would rewrite the researcher's terminal: the
    state codec refuses such names (trains/state_codec.py), nothing is extracted, and what
    is printed holds none of the raw characters."""
    names = {
        "state.json": b"{}",
        "line\nbreak.json": b"{}",
        "report\u202enosj.txt.json": b"{}",
        "bell\x07\x1b[31m.json": b"{}",
    }
    researcher, train_id = finished_train(world, last_payload=state_tar(names))
    monkeypatch.setattr(commands, "researcher_of", lambda args: researcher)
    out = tmp_path / "out"
    from train_builder.cli import main as train_main

    assert train_main(["result", train_id, "--out", str(out)]) != 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    for raw in ("\u202e", "\x07", "\x1b", "line\nbreak"):
        assert raw not in printed
    assert not out.exists() or not any(out.iterdir())


def test_printable_escapes_control_bidi_and_zero_width_characters():
    assert commands.printable("line\nbreak.json") == "line\\nbreak.json"
    assert commands.printable("report\u202enosj.txt.json") == "report\\u202enosj.txt.json"
    assert commands.printable("bell\x07\x1b[31m.json") == "bell\\x07\\x1b[31m.json"
    assert commands.printable("zero\u200bwidth") == "zero\\u200bwidth"
    assert commands.printable("plain-name_1.json") == "plain-name_1.json"


# -- a station --------------------------------------------------------------------------


def station_config(tmp_path: Path, name: str) -> StationConfig:
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    return StationConfig(
        station=StationInfo(name=name, central_url="http://testserver"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[]),
        base_dir=tmp_path / name,
    )


def test_a_station_refuses_an_input_also_sealed_to_an_outsider(world, outsider, tmp_path):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"])
    hop_sealed_to(client, stations[0], tokens["hospital-a"], STATE, [outsider.public])
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    assert offer is not None and offer.hop == 1
    verified = VerifiedHop(manifest, envelope.digest, manifest.hop(1), [])
    work, inputs = tmp_path / "work", tmp_path / "work" / "input"
    inputs.mkdir(parents=True)
    with pytest.raises(SealedToOthers, match=outsider.public.sealing_fingerprint):
        _fetch_inputs(offer, verified, stations[1], central, work, inputs, 1 << 20)
    assert list(inputs.iterdir()) == []  # nothing was opened


def test_a_skipping_station_does_not_pass_on_an_input_also_sealed_to_an_outsider(
    world, outsider, tmp_path
):
    client, researcher, stations, tokens = world
    # two rounds: hop 1 is not the last, which never skips
    submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    hop_sealed_to(client, stations[0], tokens["hospital-a"], STATE, [outsider.public])
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    assert offer is not None
    config = station_config(tmp_path, "hospital-b")
    queue, audit = HopQueue(config.state_dir), AuditLog(config.state_dir / "audit.jsonl")
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason="refused"))
    record = passage.pass_on(record, config, stations[1], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.REJECTED, False)
    assert "not sealed to exactly the keys the manifest names" in (record.reason or "")
    assert not list(queue.outbox.iterdir())
    assert json.dumps(outsider.public.sealing_fingerprint)[1:-1] in audit.path.read_text()


def test_an_honest_input_still_opens(world, tmp_path):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"])
    hop_sealed_to(client, stations[0], tokens["hospital-a"], STATE, [])
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    verified = VerifiedHop(manifest, envelope.digest, manifest.hop(1), [])
    work, inputs = tmp_path / "work", tmp_path / "work" / "input"
    inputs.mkdir(parents=True)
    _fetch_inputs(offer, verified, stations[1], central, work, inputs, 1 << 20)
    assert json.loads((inputs / "state.json").read_text()) == {"rows": 40}
    assert state_codec.list_state_files(inputs) == ["state.json"]


@pytest.mark.parametrize(
    "header",
    [b"[" * 200_000, b'{"recipients": 1}', b"\xff\xfe", b"{" + b" " * 10],
    ids=["deep", "wrong-shape", "not-utf8", "cut"],
)
def test_a_hostile_header_is_a_seal_error(tmp_path, header):
    """Anyone can write a blob's header (central, a man in the middle): reading the
    recipients is bounded and fails as a SealError, never another exception."""
    path = tmp_path / "blob.sealed"
    path.write_bytes(b"PHTSEAL2" + len(header).to_bytes(4, "big") + header + b"chunks")
    with pytest.raises(SealError, match="header is corrupt"):
        sealed_recipients(path)


def test_an_oversized_header_is_a_seal_error(tmp_path):
    path = tmp_path / "blob.sealed"
    path.write_bytes(b"PHTSEAL2" + (2**32 - 1).to_bytes(4, "big") + b"{}")
    with pytest.raises(SealError, match="truncated or oversized"):
        sealed_recipients(path)
