"""Station keys are authenticated without trusting central (issue 10, reproduction 1): the
network root's enrolment statements, the researcher's known stations, the station's own
check 4c. Who could lie here: central (serves keys, statements, revocation lists), a
man-in-the-middle (same position), a researcher (pins stops in the manifest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.verify import verify_offer, verify_passage
from tests.factories import make_manifest, make_offer
from train_builder.trust import FirstContact, KnownStations, StationTrust
from trains.enrolment import (
    ENROLMENT_TYPE,
    EnrolmentStatement,
    NetworkRoot,
    StationDirectory,
    StationEntry,
    check_statement,
    enrol,
    open_revocations,
    revoke,
    verify_enrolment,
)
from trains.errors import KeyFileError, NotEndorsed
from trains.keys import Identity, load_public
from trains.manifest import MANIFEST_TYPE, Route, Stop
from trains.signing import sign


@pytest.fixture
def net():
    root = NetworkRoot.generate("consortium")
    return root, root.public.signing_fingerprint


def statement(root: NetworkRoot, station, issued: datetime, expires: datetime):
    body = EnrolmentStatement(
        root=root.public, station=station, issued_at=issued, expires_at=expires
    )
    return sign(body, ENROLMENT_TYPE, root.signing)


def test_a_valid_enrolment_endorses_exactly_the_served_keys(net):
    root, pin = net
    a = Identity.generate("hospital-a").public
    assert verify_enrolment(enrol(root, a, 30), pin, a).station == a


def test_swapped_keys_are_refused_with_both_fingerprints(net):
    root, pin = net
    a = Identity.generate("hospital-a")
    attacker = Identity.generate("hospital-a").public  # same name, central's own keys
    with pytest.raises(NotEndorsed) as refused:
        verify_enrolment(enrol(root, a.public, 30), pin, attacker)
    assert a.public.signing_fingerprint in str(refused.value)
    assert attacker.signing_fingerprint in str(refused.value)


def test_only_the_sealing_key_swapped_is_refused(net):
    root, pin = net
    a = Identity.generate("hospital-a").public
    swapped = a.model_copy(update={"sealing_key": Identity.generate("x").public.sealing_key})
    with pytest.raises(NotEndorsed, match="sealing key"):
        verify_enrolment(enrol(root, a, 30), pin, swapped)


def test_no_enrolment_is_refused(net):
    _, pin = net
    with pytest.raises(NotEndorsed, match="not enrolled"):
        verify_enrolment(None, pin, Identity.generate("hospital-a").public)


def test_an_expired_enrolment_is_refused(net):
    root, pin = net
    a = Identity.generate("hospital-a").public
    now = datetime.now(UTC)
    old = statement(root, a, now - timedelta(days=60), now - timedelta(days=30))
    with pytest.raises(NotEndorsed, match="expired"):
        verify_enrolment(old, pin, a)


def test_an_enrolment_signed_by_another_root_is_refused(net):
    _, pin = net
    other = NetworkRoot.generate("other")
    a = Identity.generate("hospital-a").public
    with pytest.raises(NotEndorsed, match="not by the network root you pinned"):
        verify_enrolment(enrol(other, a, 30), pin, a)


def test_a_root_key_swapped_inside_the_statement_is_refused(net):
    """A statement claiming the pinned root but signed by another key fails the signature."""
    root, pin = net
    other = NetworkRoot.generate("consortium")
    a = Identity.generate("hospital-a").public
    now = datetime.now(UTC)
    body = EnrolmentStatement(
        root=root.public, station=a, issued_at=now, expires_at=now + timedelta(days=1)
    )
    forged = sign(body, ENROLMENT_TYPE, other.signing)
    with pytest.raises(NotEndorsed, match="no signature by consortium"):
        verify_enrolment(forged, pin, a)


def test_an_enrolment_for_another_name_is_refused(net):
    root, pin = net
    a = Identity.generate("hospital-a")
    b_with_as_keys = a.public.model_copy(update={"name": "hospital-b"})
    with pytest.raises(NotEndorsed, match="statement for station hospital-a, not for hospital-b"):
        verify_enrolment(enrol(root, a.public, 30), pin, b_with_as_keys)


def test_revocation_by_name_and_by_key_and_re_enrolment(net):
    root, pin = net
    a = Identity.generate("hospital-a").public
    old = enrol(root, a, 30)
    listing = open_revocations(revoke(root, None, "hospital-a", reason="keys lost"), pin)
    with pytest.raises(NotEndorsed, match=r"revoked by the network root.*keys lost"):
        verify_enrolment(old, pin, a, listing)
    # a statement issued after the revocation is valid again (the station re-enrolled)
    later = statement(
        root, a, datetime.now(UTC) + timedelta(seconds=2), datetime.now(UTC) + timedelta(days=1)
    )
    assert verify_enrolment(later, pin, a, listing)
    # revoking one key leaves the station's other keys alone
    b = Identity.generate("hospital-b").public
    b2 = Identity.generate("hospital-b").public
    only = open_revocations(revoke(root, listing, "hospital-b", b.signing_fingerprint), pin)
    assert only.serial == 2
    with pytest.raises(NotEndorsed, match="revoked"):
        verify_enrolment(enrol(root, b, 30), pin, b, only)
    assert verify_enrolment(enrol(root, b2, 30), pin, b2, only)


def test_a_revocation_list_of_another_root_is_refused(net):
    _, pin = net
    other = NetworkRoot.generate("other")
    with pytest.raises(NotEndorsed, match="not by the network root you pinned"):
        open_revocations(revoke(other, None, "hospital-a"), pin)


def test_central_refuses_to_store_a_statement_for_other_keys(net):
    root, _ = net
    a, b = Identity.generate("hospital-a").public, Identity.generate("hospital-a").public
    with pytest.raises(NotEndorsed, match="ask the root holder to enrol"):
        check_statement(enrol(root, a, 30), b)


def test_the_root_key_round_trips_and_is_private(tmp_path):
    root = NetworkRoot.generate("consortium")
    root.save(tmp_path / "root")
    assert NetworkRoot.load(tmp_path / "root").public == root.public
    assert (tmp_path / "root" / "root.key").stat().st_mode & 0o777 == 0o600


# -- public.json carries its fingerprints (issue 13 item 5) ---------------------------


def test_public_json_carries_fingerprints_that_must_match(tmp_path):
    me = Identity.generate("dr-alice")
    me.save(tmp_path)
    block = json.loads((tmp_path / "public.json").read_text())
    assert block["signing_fingerprint"] == me.public.signing_fingerprint
    assert block["sealing_fingerprint"] == me.public.sealing_fingerprint
    assert load_public(tmp_path / "public.json") == me.public
    block["signing_key"] = Identity.generate("x").public.signing_key  # key swapped, print kept
    (tmp_path / "public.json").write_text(json.dumps(block))
    with pytest.raises(KeyFileError, match="not the fingerprint of the key"):
        load_public(tmp_path / "public.json")


# -- the researcher's side: StationTrust ------------------------------------------------


def directory(*entries: tuple, revocations=None) -> StationDirectory:
    return StationDirectory(
        stations=[StationEntry(identity=i, enrolment=e) for i, e in entries],
        revocations=revocations,
    )


def test_with_a_root_stops_carry_their_enrolments(net, tmp_path):
    root, pin = net
    a = Identity.generate("hospital-a").public
    trust = StationTrust(pin, KnownStations(tmp_path / "known.json"), tmp_path / "rev.json")
    stops = trust.stops(directory((a, enrol(root, a, 30))), ["hospital-a"])
    assert stops[0].station == a and stops[0].enrolment is not None


def test_central_cannot_roll_the_revocation_list_back(net, tmp_path):
    root, pin = net
    a = Identity.generate("hospital-a").public
    trust = StationTrust(pin, KnownStations(tmp_path / "known.json"), tmp_path / "rev.json")
    first = revoke(root, None, "someone-else")
    second = revoke(root, open_revocations(first, pin), "hospital-a")
    statement_a = enrol(root, a, 30)
    with pytest.raises(NotEndorsed, match="revoked"):
        trust.stops(directory((a, statement_a), revocations=second), ["hospital-a"])
    # central now serves the older list, or none: the newer one seen before still counts
    for served in (first, None):
        with pytest.raises(NotEndorsed, match="revoked"):
            trust.stops(directory((a, statement_a), revocations=served), ["hospital-a"])


def test_first_contact_needs_the_two_fingerprints(tmp_path):
    a = Identity.generate("hospital-a").public
    known = KnownStations(tmp_path / "known.json")
    trust = StationTrust(None, known)
    with pytest.raises(FirstContact, match="first contact") as first:
        trust.stops(directory((a, None)), ["hospital-a"])
    assert a.signing_fingerprint in str(first.value) and a.sealing_fingerprint in str(first.value)
    with pytest.raises(NotEndorsed, match="not the keys central serves"):
        known.trust(a, [a.signing_fingerprint])  # one fingerprint is not enough
    with pytest.raises(NotEndorsed, match="not the keys central serves"):
        known.trust(a, [a.signing_fingerprint, "sha256:" + "0" * 64])
    known.trust(a, [a.sealing_fingerprint, a.signing_fingerprint])
    assert trust.stops(directory((a, None)), ["hospital-a"])[0].station == a


def test_a_changed_key_is_refused_until_forgotten(tmp_path):
    a = Identity.generate("hospital-a").public
    swapped = Identity.generate("hospital-a").public
    known = KnownStations(tmp_path / "known.json")
    known.trust(a, [a.signing_fingerprint, a.sealing_fingerprint])
    trust = StationTrust(None, known)
    with pytest.raises(NotEndorsed, match="changed") as refused:
        trust.stops(directory((swapped, None)), ["hospital-a"])
    message = str(refused.value)
    assert a.signing_fingerprint in message and swapped.signing_fingerprint in message
    assert "pht-train stations forget hospital-a" in message
    assert known.forget("hospital-a")
    with pytest.raises(FirstContact):
        trust.stops(directory((swapped, None)), ["hospital-a"])


# -- the station's side: check 4c ---------------------------------------------------------


@pytest.fixture
def route(net, tmp_path):
    root, pin = net
    alice = Identity.generate("alice")
    a, b, x = (Identity.generate(n) for n in ("hospital-a", "hospital-b", "agg"))
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name="hospital-a", central_url="http://127.0.0.1:1"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[alice.public.signing_fingerprint], network_root=pin),
    )

    def stop(who, enrolled=True):
        return Stop(station=who.public, enrolment=enrol(root, who.public, 1) if enrolled else None)

    def offer(stops, aggregator=None):
        mode = "parallel" if aggregator else "sequential"
        manifest = make_manifest(
            alice, [a], route=Route(mode=mode, stops=stops, aggregator=aggregator)
        )
        return make_offer(manifest.train_id, 0, sign(manifest, MANIFEST_TYPE, alice.signing))

    return a, b, x, stop, offer, config


def test_a_station_pinning_the_root_accepts_an_endorsed_route(route):
    a, b, _, stop, offer, config = route
    assert verify_offer(offer([stop(a), stop(b)]), config, a.public).hop.index == 0


def test_a_station_pinning_the_root_refuses_an_unendorsed_next_stop(route):
    a, b, _, stop, offer, config = route
    with pytest.raises(NotEndorsed, match="refuses the route: station hospital-b is not enrolled"):
        verify_offer(offer([stop(a), stop(b, enrolled=False)]), config, a.public)
    # nor passes a state on to it when it refuses its own hop (skip routes)
    with pytest.raises(NotEndorsed):
        verify_passage(
            offer([stop(a), stop(b, enrolled=False)]), a.public, config.policy.network_root
        )


def test_a_station_pinning_the_root_refuses_an_unendorsed_aggregator(route):
    a, b, x, stop, offer, config = route
    with pytest.raises(NotEndorsed, match="agg is not enrolled"):
        verify_offer(offer([stop(a), stop(b)], stop(x, enrolled=False)), config, a.public)


def test_a_station_refuses_a_stop_pinned_with_keys_its_enrolment_does_not_name(route, net):
    root, _ = net
    a, b, _, stop, offer, config = route
    fake = Identity.generate("hospital-b")
    lying = Stop(station=fake.public, enrolment=enrol(root, b.public, 1))
    with pytest.raises(NotEndorsed, match="endorsed"):
        verify_offer(offer([stop(a), lying]), config, a.public)


# -- the commands: pht-network, pht-train keys show -----------------------------------


def test_pht_network_makes_a_root_enrols_and_revokes(tmp_path, capsys, monkeypatch):
    from trains.network_cli import main as network

    monkeypatch.chdir(tmp_path)
    root_dir = str(tmp_path / "root")
    assert network(["root", "new", "--dir", root_dir, "--name", "consortium"]) == 0
    pin = NetworkRoot.load(tmp_path / "root").public.signing_fingerprint
    assert pin in capsys.readouterr().out
    assert network(["root", "new", "--dir", root_dir, "--name", "again"]) == 1
    station = Identity.generate("hospital-a")
    station.save(tmp_path / "keys")
    public = str(tmp_path / "keys" / "public.json")
    assert network(["enrol", public, "--dir", root_dir, "--days", "10"]) == 0
    assert station.public.signing_fingerprint in capsys.readouterr().out
    made = (tmp_path / "hospital-a.enrolment.json").read_text()
    from trains.signing import Envelope

    assert verify_enrolment(Envelope.model_validate_json(made), pin, station.public)
    for serial in (1, 2):
        assert network(["revoke", "hospital-a", "--dir", root_dir, "--reason", "lost"]) == 0
        assert f"revocation list {serial}" in capsys.readouterr().out
    listing = Envelope.model_validate_json((tmp_path / "root" / "revocations.json").read_text())
    assert open_revocations(listing, pin).serial == 2


def test_keys_show_prints_both_fingerprints(tmp_path, capsys):
    from train_builder.cli import main as pht_train

    me = Identity.generate("dr-alice")
    me.save(tmp_path / "keys")
    assert pht_train(["--keys", str(tmp_path / "keys"), "keys", "show"]) == 0
    out = capsys.readouterr().out
    assert me.public.signing_fingerprint in out and me.public.sealing_fingerprint in out


def test_a_station_network_root_must_be_a_fingerprint(tmp_path):
    from station.config import load_config
    from trains.errors import ConfigError

    config = tmp_path / "station.toml"
    config.write_text(
        '[station]\nname = "a"\ncentral_url = "http://127.0.0.1:1"\n'
        '[policy]\nnetwork_root = "consortium"\n'
    )
    with pytest.raises(ConfigError, match=r"policy\.network_root"):
        load_config(config)


def test_at_a_terminal_typing_the_name_confirms_a_first_contact(tmp_path, monkeypatch):
    """A terminal is faked (isatty and input): the prompt cannot be driven for real here."""
    from types import SimpleNamespace

    from train_builder.station_commands import confirm_at_prompt

    a, b = Identity.generate("hospital-a").public, Identity.generate("hospital-b").public
    known = KnownStations(tmp_path / "known.json")
    researcher = SimpleNamespace(trust=StationTrust(None, known))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _: "y")  # a reflex 'y' confirms nothing
    assert not confirm_at_prompt(researcher, FirstContact("first contact", [a]))
    assert known.load() == {}
    answers = iter(["hospital-a", "hospital-b"])
    monkeypatch.setattr("builtins.input", lambda _: next(answers))
    assert confirm_at_prompt(researcher, FirstContact("first contact", [a, b]))
    assert set(known.load()) == {"hospital-a", "hospital-b"}
