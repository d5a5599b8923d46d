"""A hop's input opened as it downloads (station.fetch): the sealed bytes stream from
central through the header check, the AEAD and the unpacker into the input folder, and
nothing unpacked stays when the digest the chain names does not match at the end.

Central is the real app (in process, SQLite); the state it serves is changed for real,
by overwriting its stored blob the way a compromised central would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from station.fetch import fetch_inputs
from station.verify import VerifiedHop
from tests.test_central_protocol import submit
from tests.test_seal_checks import STATE, database_url, hop_sealed_to, state_tar, world
from tests.test_station_passage import client_for
from trains.chunkreader import DownloadTooLarge
from trains.errors import SignatureInvalid
from trains.sealing import output_context, seal

__all__ = ["database_url", "world"]  # fixtures


def stored_blob(root: Path, sealed: bytes) -> Path:
    """Central's stored copy of ``sealed`` under its data folder."""
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size == len(sealed) and path.read_bytes() == sealed:
            return path
    raise AssertionError("central's blob not found")


def second_hop(world, tmp_path: Path, max_download_bytes: int | None = None):
    """Hop 0 delivered STATE; hop 1's offer, its verified hop, its client, the blob."""
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"])
    sent = hop_sealed_to(client, stations[0], tokens["hospital-a"], STATE, [])
    central = client_for(client.app, tokens["hospital-b"])
    central.max_download_bytes = max_download_bytes
    offer = central.next_hop()
    assert offer is not None and offer.hop == 1
    verified = VerifiedHop(manifest, envelope.digest, manifest.hop(1), [])
    blob = stored_blob(tmp_path, sent["sealed"])
    work, inputs = tmp_path / "work", tmp_path / "work" / "input"
    inputs.mkdir(parents=True)
    fetch = lambda: fetch_inputs(offer, verified, stations[1], central, work, inputs, 1 << 20)  # noqa: E731
    return fetch, blob, inputs, manifest


def test_an_honest_input_opens_with_no_sealed_file_written(world, tmp_path):
    fetch, _, inputs, _ = second_hop(world, tmp_path)
    fetch()
    assert (inputs / "state.json").read_bytes() == b'{"rows": 40}'
    assert sorted(p.name for p in inputs.parent.iterdir()) == ["input"]


def test_another_state_sealed_to_us_is_unpacked_then_removed(world, tmp_path):
    """The worst case of opening while downloading: central serves a different state that
    opens cleanly (sealed to this station, right context). Its files were unpacked before
    the last byte arrived; the digest at the end refuses it and they are gone."""
    fetch, blob, inputs, manifest = second_hop(world, tmp_path)
    other = state_tar({"state.json": b'{"rows": 41}', "extra.csv": b"x\n" * 50_000})
    readers = manifest.recipients_after(0)
    blob.write_bytes(seal(other, readers, output_context(manifest.train_id, 0)))
    with pytest.raises(SignatureInvalid, match="changed in transit"):
        fetch()
    assert not inputs.exists() or list(inputs.iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_a_damaged_input_is_named_by_its_digest_and_leaves_nothing(world, tmp_path, damage):
    fetch, blob, inputs, _ = second_hop(world, tmp_path)
    sealed = bytearray(blob.read_bytes())
    if damage == "flip":
        sealed[len(sealed) // 2] ^= 1
    else:
        del sealed[-20:]
    blob.write_bytes(bytes(sealed))
    with pytest.raises(SignatureInvalid, match="changed in transit"):
        fetch()
    assert not inputs.exists() or list(inputs.iterdir()) == []


def test_an_input_past_the_download_bound_is_refused_at_once(world, tmp_path):
    fetch, blob, inputs, _ = second_hop(world, tmp_path, max_download_bytes=1000)
    blob.write_bytes(blob.read_bytes() + b"\0" * 100_000)
    with pytest.raises(DownloadTooLarge, match="larger than any state"):
        fetch()
    assert not inputs.exists() or list(inputs.iterdir()) == []
