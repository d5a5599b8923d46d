"""Hypothesis against every parser that reads bytes from another party at a station:
state archives (another station, the researcher), a train's outputs (the train), offers
and the records kept of them (central, a man-in-the-middle, the researcher who signs the
manifest). Whatever the bytes, the answer is a result or a PhtError, never another
exception, and nothing is written outside the target folder.

Bounded in time: a fixed number of examples each, no deadline, nothing timed."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.messages import HopOffer
from station import output_parse
from station.config import DisclosurePolicy, Policy, StationConfig, StationInfo
from station.disclosure import check_output
from station.queue import HopQueue
from station.verify import verify_offer
from tests.factories import make_manifest
from trains import state_codec
from trains.errors import PhtError
from trains.keys import Identity, b64encode
from trains.manifest import MANIFEST_TYPE
from trains.sealing import open_file
from trains.signing import Envelope, Signature, pae, sign

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))

# -- the state codec ---------------------------------------------------------------------

PARTS = st.sampled_from(["a", "a.json", "b.csv", ".", "..", "", "x.pkl", "\n.json", "é.json"])
NAMES = st.lists(PARTS, min_size=1, max_size=4).map("/".join)
KINDS = st.sampled_from(
    [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]
)
ENTRIES = st.lists(st.tuples(NAMES, KINDS, st.binary(max_size=64)), max_size=8)


def _archive(entries: list[tuple[str, bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            member = tarfile.TarInfo(name)
            member.type = kind
            if kind == tarfile.REGTYPE:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
            else:
                member.linkname = "../../etc/passwd"
                tar.addfile(member)
    return buffer.getvalue()


def _unpack_is_safe(archive: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        target = Path(root) / "out"
        try:
            names = state_codec.unpack(archive, target, 4096)
        except PhtError:
            names = []
        outside = [p for p in Path(root).rglob("*") if not p.is_relative_to(target)]
        assert outside == []
        written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
        assert all(name in written for name in names)


@FAST
@given(ENTRIES)
def test_unpack_of_arbitrary_entries_refuses_with_a_state_error_or_succeeds(entries):
    _unpack_is_safe(_archive(entries))


@FAST
@given(ENTRIES, st.data())
def test_unpack_of_a_mutated_archive_refuses_with_a_state_error_or_succeeds(entries, data):
    archive = bytearray(_archive(entries))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(archive) - 1))
        archive[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(archive)))
    _unpack_is_safe(bytes(archive[:cut]))


@FAST
@given(st.binary(max_size=4096))
def test_unpack_of_arbitrary_bytes_refuses_with_a_state_error(blob):
    _unpack_is_safe(blob)


# -- the disclosure parsers --------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)
OUTPUT_NAMES = ["state.json", "stats.counts.json", "table.csv", "ward.counts.csv", "x.txt"]
CONTENT = st.one_of(
    st.binary(max_size=2048),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(st.lists(st.text(max_size=6), max_size=5), max_size=6).map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
    ),
    st.integers(1, 3000).map(lambda n: b"[" * n),
)


@FAST
@given(st.sampled_from(OUTPUT_NAMES), CONTENT, st.sampled_from([True, False]))
def test_the_output_parsers_answer_a_shape_or_a_refusal_for_any_bytes(name, content, refuse):
    """The parse the child runs, in-process (many examples); its bounds apply as set."""
    output_parse.csv.field_size_limit(output_parse.CSV_FIELD_BYTES)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / name
        path.write_bytes(content)
        counted = ".counts." in name
        result = output_parse.check_file(path, name, counted, 5, refuse)
        assert set(result) in ({"shape", "suppressed"}, {"refused"})
        if "refused" in result:
            assert counted


@SLOW
@given(st.sampled_from(OUTPUT_NAMES), CONTENT)
def test_check_output_ends_in_a_summary_or_a_pht_error_for_any_bytes(name, content):
    """The whole check, child process and all (fewer examples: a process each)."""
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / name).write_bytes(content)
        with contextlib.suppress(PhtError):
            check_output(Path(root), [name], 1 << 20, DisclosurePolicy())


# -- offers and the records kept of them --------------------------------------------------

RESEARCHER, STATION = Identity.generate("alice"), Identity.generate("hospital-a")
CONFIG = StationConfig(
    station=StationInfo(name="hospital-a", central_url="http://127.0.0.1:1"),
    policy=Policy(trusted_signers=[RESEARCHER.public.signing_fingerprint]),
)
GOOD = make_manifest(RESEARCHER, [STATION]).model_dump(mode="json")
JSON_TEXT = st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(sorted(GOOD)), JSON_VALUES))


def _signed_bytes(payload: bytes) -> Envelope:
    """An envelope over any payload, signed for real by the trusted researcher: a
    researcher (or their stolen key) may sign anything."""
    sig = RESEARCHER.signing.sign(pae(MANIFEST_TYPE, payload))
    keyid = RESEARCHER.public.signing_fingerprint
    return Envelope(
        payloadType=MANIFEST_TYPE,
        payload=b64encode(payload),
        signatures=[Signature(keyid=keyid, sig=b64encode(sig))],
    )


def _offer(train_id: str, hop: int, manifest: Envelope) -> HopOffer:
    """An offer as the client would hand it on, built without the message's own checks
    (``model_construct``): verification must hold even for values the schema would refuse."""
    return HopOffer.model_construct(
        train_id=train_id,
        hop=hop,
        kind="local",
        manifest=manifest,
        inputs=[],
        previous_receipts=[],
        lease_s=60.0,
    )


def _mutated_manifest(field: str, value: object) -> bytes:
    return json.dumps({**GOOD, field: value}).encode()


@FAST
@given(
    st.one_of(
        st.binary(max_size=512),
        JSON_TEXT.map(lambda v: json.dumps(v).encode()),
        st.tuples(st.sampled_from(sorted(GOOD)), JSON_VALUES).map(
            lambda fv: _mutated_manifest(*fv)
        ),
    ),
    st.integers(-(2**70), 2**70),
)
def test_an_offer_with_any_signed_manifest_bytes_is_verified_or_refused(payload, hop):
    offer = _offer(GOOD["train_id"], hop, _signed_bytes(payload))
    with contextlib.suppress(PhtError):
        verify_offer(offer, CONFIG, STATION.public)


@FAST
@given(
    st.fixed_dictionaries(
        {
            "payloadType": st.text(max_size=20),
            "payload": st.text(max_size=40),
            "signatures": st.lists(
                st.fixed_dictionaries({"keyid": st.text(max_size=80), "sig": st.text(max_size=40)}),
                max_size=2,
            ),
        }
    )
)
def test_an_offer_with_any_envelope_is_refused_with_a_pht_error(raw):
    envelope = Envelope.model_validate(raw)
    offer = _offer(GOOD["train_id"], 0, envelope)
    with contextlib.suppress(PhtError):
        verify_offer(offer, CONFIG, STATION.public)


@FAST
@given(st.binary(max_size=512))
def test_a_damaged_hop_record_is_set_aside_and_the_rest_still_read(blob):
    with tempfile.TemporaryDirectory() as root:
        queue = HopQueue(Path(root))
        good = sign(make_manifest(RESEARCHER, [STATION]), MANIFEST_TYPE, RESEARCHER.signing)
        from station.queue import HopRecord, HopState

        good_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())
        queue.save(HopRecord.from_offer(_offer(good_id, 0, good), HopState.PENDING))
        (queue.hops / f"{bad_id}-0.json").write_bytes(blob)
        assert [r.train_id for r in queue.all()] == [good_id]


# -- sealed states: the header is JSON another station wrote ------------------------------


@FAST
@given(
    st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(lambda b: b"PHTSEAL2" + len(b).to_bytes(4, "big") + b),
        st.integers(1, 300_000).map(
            lambda n: b"PHTSEAL2" + min(n, 1 << 20).to_bytes(4, "big") + b"[" * min(n, 1 << 20)
        ),
    )
)
def test_opening_arbitrary_sealed_bytes_refuses_with_a_seal_error(blob):
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "in.sealed").write_bytes(blob)
        with contextlib.suppress(PhtError):
            open_file(Path(root) / "in.sealed", Path(root) / "out.tar", STATION.sealing, "ctx")
        assert not (Path(root) / "out.tar").exists()
