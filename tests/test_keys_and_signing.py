import json
import os

import pytest

from tests.factories import make_manifest
from trains.errors import KeyFileError, SignatureInvalid
from trains.keys import Identity, b64decode, b64encode
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.signing import Envelope, canonical_json, open_envelope, sign


@pytest.fixture
def alice() -> Identity:
    return Identity.generate("alice")


@pytest.fixture
def stations() -> list[Identity]:
    return [Identity.generate(f"hospital-{c}") for c in "abc"]


def test_key_files_are_private_and_round_trip(tmp_path, alice):
    alice.save(tmp_path / "keys")
    for name in ("signing.key", "sealing.key"):
        assert os.stat(tmp_path / "keys" / name).st_mode & 0o777 == 0o600
    loaded = Identity.load(tmp_path / "keys")
    assert loaded.public == alice.public
    assert loaded.public.signing_fingerprint.startswith("sha256:")
    assert len(loaded.public.signing_fingerprint) == len("sha256:") + 64


def test_world_readable_key_is_refused(tmp_path, alice):
    alice.save(tmp_path)
    os.chmod(tmp_path / "signing.key", 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        Identity.load(tmp_path)


def test_public_block_not_matching_private_keys_is_refused(tmp_path, alice):
    alice.save(tmp_path)
    other = Identity.generate("alice")
    (tmp_path / "public.json").write_text(other.public.model_dump_json())
    with pytest.raises(KeyFileError, match="does not match"):
        Identity.load(tmp_path)


def test_canonical_json_is_independent_of_key_order(alice, stations):
    manifest = make_manifest(alice, stations)
    shuffled = dict(reversed(list(json.loads(manifest.model_dump_json()).items())))
    again = Manifest.model_validate(shuffled)
    assert canonical_json(again) == canonical_json(manifest)
    text = canonical_json(manifest).decode()
    assert " " not in text.replace("hospital-", "")  # no insignificant whitespace
    keys = list(json.loads(text).keys())
    assert keys == sorted(keys)


def test_sign_and_verify(alice, stations):
    manifest = make_manifest(alice, stations)
    envelope = sign(manifest, MANIFEST_TYPE, alice.signing)
    assert open_envelope(envelope, MANIFEST_TYPE, alice.public, Manifest, "manifest") == manifest


def test_changed_payload_fails_verification(alice, stations):
    envelope = sign(make_manifest(alice, stations), MANIFEST_TYPE, alice.signing)
    payload = json.loads(b64decode(envelope.payload))
    payload["route"]["rounds"] = 5
    forged = envelope.model_copy(update={"payload": b64encode(json.dumps(payload).encode())})
    with pytest.raises(SignatureInvalid, match="does not verify"):
        open_envelope(forged, MANIFEST_TYPE, alice.public, Manifest, "manifest")


def test_signature_by_another_key_is_named(alice, stations):
    mallory = Identity.generate("alice")
    envelope = sign(make_manifest(alice, stations), MANIFEST_TYPE, mallory.signing)
    with pytest.raises(SignatureInvalid, match="no signature by alice"):
        open_envelope(envelope, MANIFEST_TYPE, alice.public, Manifest, "manifest")


def test_signature_cannot_be_reused_for_another_payload_type(alice, stations):
    envelope = sign(make_manifest(alice, stations), MANIFEST_TYPE, alice.signing)
    relabelled = Envelope(
        payloadType="application/vnd.in-toto+json",
        payload=envelope.payload,
        signatures=envelope.signatures,
    )
    with pytest.raises(SignatureInvalid):
        open_envelope(relabelled, "application/vnd.in-toto+json", alice.public, Manifest, "x")


def test_route_hops_cycle_through_rounds(alice, stations):
    manifest = make_manifest(alice, stations, rounds=2)
    hops = manifest.hops()
    assert [h.stop.name for h in hops] == [s.name for s in stations] * 2
    assert [h.round for h in hops] == [0, 0, 0, 1, 1, 1]
    assert [h.is_last for h in hops] == [False] * 5 + [True]
    assert manifest.recipient_after(2) == stations[0].public
    assert manifest.recipient_after(5) == alice.public


def test_station_twice_in_a_round_is_refused(alice, stations):
    with pytest.raises(ValueError, match="once per round"):
        make_manifest(alice, [stations[0], stations[0]])
