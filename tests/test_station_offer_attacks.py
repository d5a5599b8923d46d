"""A man-in-the-middle (or central itself) rewriting what a station is offered: the real
central app in-process, the station's own client and daemon step, and between them a
transport that rewrites the answer to ``/hops/next`` as a proxy on the wire would. Whatever
it writes, no file lands outside the station's state folder and the daemon goes on."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from central.client import CentralClient
from station.audit import AuditLog
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.daemon import Station
from station.delivery import is_transient
from station.queue import HopQueue, HopState
from station.verify import verify_offer
from tests import test_central_protocol as protocol
from tests.factories import make_manifest, make_offer
from tests.test_central_protocol import auth, submit
from trains.errors import BadAnswer, ConfigError, PhtError
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign

database_url = protocol.database_url  # on SQLite and on PostgreSQL
world = protocol.world

OTHER_TRAIN = "0b5e9a4e-8c1f-4f43-9d2a-6f0f2f3e1a7b"


class Rewriting(httpx.BaseTransport):
    """Passes every request on; rewrites the JSON of an offer on its way back."""

    def __init__(self, inner: httpx.BaseTransport, rewrite: Callable[[dict], None]) -> None:
        self.inner, self.rewrite = inner, rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != "/api/v1/hops/next" or response.status_code != 200:
            return response
        response.read()
        body = json.loads(response.content)
        self.rewrite(body)
        return httpx.Response(200, content=json.dumps(body).encode(), request=request)


def station_behind_proxy(world, tmp_path: Path, rewrite: Callable[[dict], None]):
    client, researcher, stations, tokens = world
    me = stations[0]
    central = CentralClient("http://testserver", tokens[me.name])
    inner = TestClient(client.app)._transport
    central._http = httpx.Client(
        base_url="http://testserver",
        transport=Rewriting(inner, rewrite),
        headers=auth(tokens[me.name]),
    )
    root = tmp_path / "station-side"  # central keeps its own files in tmp_path
    root.mkdir()
    csv = root / "d.csv"
    csv.write_text("x\n1\n")
    home = root / "deep" / "down" / "station"
    config = StationConfig(
        station=StationInfo(name=me.name, central_url="http://testserver"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[researcher.public.signing_fingerprint]),
        base_dir=home,
    )
    queue = HopQueue(config.state_dir)
    station = Station(config, me, queue, AuditLog(config.state_dir / "audit.jsonl"))
    return station, central, home


def files_outside(tmp_path: Path, home: Path) -> list[Path]:
    """Every file on the station's side that is neither in its folder nor its CSV (the
    traversals above land in this tree, relative to the station's state folder)."""
    root = tmp_path / "station-side"
    return [
        p for p in root.rglob("*") if p.is_file() and home not in p.parents and p.name != "d.csv"
    ]


def _set(key: str, value: object) -> Callable[[dict], None]:
    def rewrite(body: dict) -> None:
        body[key] = value

    return rewrite


@pytest.mark.parametrize(
    "rewrite",
    [
        _set("train_id", "../../../PWNED"),
        _set("train_id", "../../../../tmp/x/PWNED"),
        _set("train_id", "a" * 5000),
        _set("train_id", OTHER_TRAIN + "\n"),
        _set("train_id", OTHER_TRAIN.upper()),
        _set("hop", 2**63),
        _set("hop", -1),
        _set("kind", "../x"),
        _set("inputs", [{"hop": 2**63, "digest": "sha256:" + "0" * 64}]),
        _set("inputs", [{"hop": 0, "digest": "../../etc/passwd"}]),
        _set("lease_s", 1e300),
        _set("extra", "field"),
    ],
    ids=[
        "traversal",
        "traversal-abs",
        "5000-chars",
        "newline",
        "upper-case",
        "hop-2**63",
        "hop-negative",
        "kind",
        "input-hop",
        "input-digest",
        "lease",
        "extra-field",
    ],
)
def test_a_rewritten_offer_is_dropped_writes_nothing_and_the_daemon_goes_on(
    world, tmp_path, rewrite
):
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"])
    station, central, home = station_behind_proxy(world, tmp_path, rewrite)
    with pytest.raises(BadAnswer) as refused:
        station.step(central)
    assert is_transient(refused.value)  # the daemon's loop backs off and asks again
    assert station.queue.all() == []
    assert files_outside(tmp_path, home) == []


class Endless(httpx.BaseTransport):
    """Answers every request with 200 and JSON that never ends (counts what it sent)."""

    def __init__(self) -> None:
        self.sent_mb = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        def body():
            yield b'{"train_id": "'
            while self.sent_mb < 1000:
                self.sent_mb += 1
                yield b"a" * (1 << 20)

        return httpx.Response(200, content=body(), request=request)


def test_an_endless_answer_is_cut_off_not_read_whole():
    central = CentralClient("http://testserver", "token")
    endless = Endless()
    central._http = httpx.Client(base_url="http://testserver", transport=endless)
    with pytest.raises(BadAnswer, match="over 64 MB"):
        central.next_hop()
    assert endless.sent_mb <= 65


def test_an_offer_relabelled_with_another_train_id_is_refused(world, tmp_path):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    station, central, home = station_behind_proxy(world, tmp_path, _set("train_id", OTHER_TRAIN))
    assert station.step(central) is True
    (record,) = station.queue.all()
    assert record.state == HopState.REJECTED
    assert record.train_id == OTHER_TRAIN != manifest.train_id
    assert "relabelled" in (record.reason or "")
    assert files_outside(tmp_path, home) == []


def test_an_honest_offer_still_passes(world, tmp_path):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    station, central, _ = station_behind_proxy(world, tmp_path, lambda body: None)
    assert station.step(central) is True
    (record,) = station.queue.all()
    assert (record.state, record.train_id) == (HopState.APPROVED, manifest.train_id)


def test_a_manifest_signed_with_a_hostile_train_id_is_refused_by_the_station(world, tmp_path):
    _, researcher, stations, _ = world
    hostile = make_manifest(researcher, stations).model_copy(
        update={"train_id": "../../../../tmp/x/PWNED"}
    )
    envelope = sign(hostile, MANIFEST_TYPE, researcher.signing)
    station, _, _ = station_behind_proxy(world, tmp_path, lambda body: None)
    offer = protocol_offer(envelope)
    with pytest.raises(PhtError, match="train_id"):
        verify_offer(offer, station.config, stations[0].public)


def protocol_offer(envelope):

    return make_offer(OTHER_TRAIN, 0, envelope)


@pytest.mark.parametrize(
    "rid", ["../../../etc/passwd", "a" * 5000, "*", "[a-z]*", "x\n", OTHER_TRAIN + "-0/../../x"]
)
def test_a_hop_id_from_the_command_line_never_becomes_a_path(tmp_path, rid):
    queue = HopQueue(tmp_path / "state")
    with pytest.raises(ConfigError, match="not a hop"):
        queue.get(rid)


@pytest.mark.parametrize("train_id", ["../../api/v1/admin/parties", "a" * 5000, "x?y=1", ""])
def test_the_client_puts_no_hostile_train_id_into_a_url(train_id):
    central = CentralClient("http://127.0.0.1:9", "token")  # never contacted
    with pytest.raises(ConfigError, match="not a train id"):
        central.status(train_id)
    with pytest.raises(ConfigError, match="not a train id"):
        central.heartbeat(train_id, 0)
    with pytest.raises(ConfigError, match="out of range"):
        central.heartbeat(OTHER_TRAIN, 2**63)


# -- fuzzing: any offer a man-in-the-middle or a colluding researcher could make -----------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_HOSTILE_TEXT = st.sampled_from(
    ["../../x", "/etc/passwd", "a" * 5000, "x\n", "\u202e", "", OTHER_TRAIN, "sha256:" + "0" * 64]
)


class _Fuzz:
    """One honest offer and one station, built once (hypothesis runs many examples)."""

    def __init__(self) -> None:
        import tempfile

        from trains.keys import Identity

        self.alice = Identity.generate("alice")
        self.me = Identity.generate("hospital-a")
        other = Identity.generate("hospital-b")
        self.manifest = make_manifest(self.alice, [self.me, other])
        root = Path(tempfile.mkdtemp(prefix="pht-fuzz-"))
        csv = root / "d.csv"
        csv.write_text("x\n1\n")
        self.root = root
        self.config = StationConfig(
            station=StationInfo(name=self.me.name, central_url="http://127.0.0.1:1"),
            datasets={"cohort": CsvSource(path=csv)},
            policy=Policy(trusted_signers=[self.alice.public.signing_fingerprint]),
            base_dir=root / "station",
        )
        self.queue = HopQueue(self.config.state_dir)

    def body(self, manifest_fields: dict) -> dict:
        """An offer whose manifest the researcher really signed, with ``manifest_fields``."""
        import rfc8785

        from trains.keys import b64encode
        from trains.signing import Envelope, Signature, pae

        payload = self.manifest.model_dump(mode="json") | manifest_fields
        raw = rfc8785.dumps(payload)
        signature = self.alice.signing.sign(pae(MANIFEST_TYPE, raw))
        envelope = Envelope(
            payloadType=MANIFEST_TYPE,
            payload=b64encode(raw),
            signatures=[
                Signature(keyid=self.alice.public.signing_fingerprint, sig=b64encode(signature))
            ],
        )
        return protocol_offer(envelope).model_dump(mode="json") | {
            "train_id": payload.get("train_id", OTHER_TRAIN)
            if isinstance(payload.get("train_id"), str)
            else OTHER_TRAIN
        }


_fuzz: _Fuzz | None = None


@settings(max_examples=150, deadline=None)
@given(
    offer_key=st.sampled_from(
        ["train_id", "hop", "kind", "inputs", "previous_receipts", "lease_s", "manifest", "new"]
    ),
    offer_value=_JSON | _HOSTILE_TEXT,
    manifest_key=st.sampled_from(
        ["train_id", "name", "datasets", "created_at", "expires_at", "route", "outputs", "none"]
    ),
    manifest_value=_JSON | _HOSTILE_TEXT,
)
def test_fuzzed_offers_are_refused_cleanly_and_write_only_inside_the_state_folder(
    offer_key, offer_value, manifest_key, manifest_value
):
    global _fuzz
    from pydantic import TypeAdapter, ValidationError

    from central.messages import HopOffer
    from station.queue import HopRecord

    _fuzz = _fuzz or _Fuzz()
    fields = {} if manifest_key == "none" else {manifest_key: manifest_value}
    try:
        body = _fuzz.body(fields)
    except Exception:  # e.g. an integer RFC 8785 cannot encode: nobody can sign that
        return
    body[offer_key] = offer_value
    try:
        offer = TypeAdapter(HopOffer).validate_json(json.dumps(body))
    except ValidationError:
        return  # the client drops it as a BadAnswer
    with contextlib.suppress(PhtError):  # refused with a reason; anything else fails
        verify_offer(offer, _fuzz.config, _fuzz.me.public)
    record = _fuzz.queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason="fuzz"))
    written = _fuzz.queue.hops / f"{record.id}.json"
    assert written.parent == _fuzz.queue.hops and written.exists()
    assert all(
        _fuzz.config.state_dir in p.parents or p.name == "d.csv"
        for p in _fuzz.root.rglob("*")
        if p.is_file()
    )
