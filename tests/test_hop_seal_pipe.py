"""A hop's output is tarred and sealed in one pipe (station.outcome.control_and_seal):
disclosure control first, nothing sealed before it passed (a refusal leaves no sealed
file), no archive file on the way, and the receipt's two digests equal those of a
separate pass over the sealed file and of the archive inside it. Real files, the
station's real disclosure checks, real sealing."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from station.outcome import SealTo, control_and_seal
from tests.test_outcome import hop_parts
from trains import state_codec
from trains.errors import DisclosureRefused, StateInvalid, StateTooLarge
from trains.sealing import digest_file, open_sealed
from trains.statepipe import SinkError


@pytest.fixture
def hop(tmp_path):
    researcher, verified, config, output = hop_parts(tmp_path)
    (output / "state.json").write_text('{"n": 100}')
    return researcher, verified, config, output, tmp_path


def seal_output(hop, seen=None):
    researcher, verified, config, output, tmp_path = hop
    seal_to = SealTo([researcher.public], "pht/t/output-of-hop/0")
    return control_and_seal(
        output,
        tmp_path / "out.sealed",
        seal_to,
        verified,
        1 << 20,
        config,
        tmp_path / "hop.log",
        False,
        checked=(lambda d: seen.append(sorted(p.name for p in tmp_path.iterdir())))
        if seen is not None
        else (lambda _: None),
    )


def test_the_output_is_sealed_in_one_pipe_with_both_digests(hop):
    researcher, _, _, _, tmp_path = hop
    seen: list[list[str]] = []
    disclosure, digests = seal_output(hop, seen)
    assert seen and "out.sealed" not in seen[0]  # the checks ran before anything was sealed
    sealed = tmp_path / "out.sealed"
    assert digests.sealed == digest_file(sealed)  # what central and the next stop check
    plain = open_sealed(sealed.read_bytes(), researcher.sealing, "pht/t/output-of-hop/0")
    assert digests.plain == "sha256:" + hashlib.sha256(plain).hexdigest()  # the commitment
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = sorted(n for n in tar.getnames() if n != state_codec.NONCE)
        assert names == [f.name for f in disclosure.files]
        member = tar.extractfile("state.json")
        assert member is not None and member.read() == b'{"n": 100}'
    assert not list(tmp_path.glob("*.tar"))  # no archive file was written on the way


def test_a_refused_output_is_never_sealed(hop):
    _, _, _, output, tmp_path = hop
    rows = "\n".join("1" for _ in range(61))
    (output / "table.counts.csv").write_text(f"n\n{rows}\n")
    with pytest.raises(DisclosureRefused):
        seal_output(hop)
    assert not (tmp_path / "out.sealed").exists()


def test_an_output_over_the_cap_is_never_sealed(hop):
    _, _, _, output, tmp_path = hop
    (output / "state.json").write_bytes(b" " * 1_234_567)  # over max_output_mb
    with pytest.raises(StateTooLarge):
        seal_output(hop)
    assert not (tmp_path / "out.sealed").exists()


@pytest.mark.parametrize("fault", ["missing folder", "disk full"])
def test_a_station_disk_failure_while_sealing_is_not_blamed_on_the_train(hop, fault):
    """Review finding: a write error of the sealed file (the station's disk) came out as
    StateInvalid, "the output does not match the train's declared outputs", telling the
    researcher their train was wrong. /dev/full is a real full disk (ENOSPC on write)."""
    researcher, verified, config, output, tmp_path = hop
    if fault == "missing folder":
        target = tmp_path / "gone" / "out.sealed"
    else:
        target = tmp_path / "out.sealed"
        target.symlink_to("/dev/full")  # removed on failure: the link, never the device
    with pytest.raises(SinkError) as raised:
        control_and_seal(output, target, SealTo([researcher.public], "pht/t/output-of-hop/0"),
                         verified, 1 << 20, config, tmp_path / "hop.log", False)  # fmt: skip
    assert not isinstance(raised.value, StateInvalid)
    assert not target.exists() and not target.is_symlink()
    assert Path("/dev/full").exists()
